import FerryTestSupport
import Foundation
import Testing

@testable import FerryAgent
import FerryPipeline
import FerryQueue
import Prometheus

/// Issue 17: `input.internal_metrics` appends Ferry's own metrics to the queue as an event, so they
/// travel with the data to wherever the outputs deliver it.
@Suite(.serialized, .tags(.long), .timeLimit(.minutes(3))) struct InternalMetricsTests {
    /// A real `ferry` with the file output: the metrics events arrive in the output's files, stamped like
    /// any input's events, with the queue's figures, each output's state, and the counters (a reload and
    /// a rejected request counted in them).
    @Test func metricsEventsTravelThroughTheQueueToTheOutput() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-internal-metrics")
        defer { dir.remove() }
        let out = dir.appending("out")
        let config = dir.appending("ferry.yaml")
        try """
            input:
              internal_metrics: { interval: 1s, fields: { site: lisbon-07 } }
            output:
              file: { path: \(out) }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let ferry = FerryProcess(name: "metrics", dir: dir, extra: ["--config", config])
        defer { ferry.terminate() }
        try await ferry.start()
        let pid = try #require(ferry.child?.pid)

        // Something for the counters: a delivered event, a refused request, and a reload.
        #expect(try await post(["m-1"], to: ferry.url))
        let refused = try await run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                                                      "--data-binary", "{not json", ferry.url]).output
        #expect(refused == "400")
        kill(pid, SIGHUP)

        // The metrics events in the output, newest last; wait for one that saw the reload and an earlier
        // metrics event (each event's figures are taken before it is itself appended).
        func metricsEvents() -> [[String: Any]] {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.hasSuffix(".ndjson") }.sorted()
            return files.flatMap { file in
                ((try? String(contentsOfFile: out + "/" + file, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
                    guard line.contains("ferry internal metrics") else { return nil }
                    return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                }
            }
        }
        func counters(_ event: [String: Any]) -> [String: Any] {
            ((event["ferry"] as? [String: Any])?["counters"] as? [String: Any]) ?? [:]
        }
        let sawReload = try await eventually(timeout: .seconds(30)) {
            metricsEvents().contains {
                counters($0)[#"ferry_config_reloads_total{result="applied"}"#] as? Int == 1
                    && counters($0)[#"ferry_input_events_total{input="internal_metrics"}"#] as? Int ?? 0 >= 1
            }
        }
        let events = metricsEvents()
        #expect(sawReload, "\(events.last.map { "\($0)" } ?? "no metrics event yet")")
        let event = try #require(events.last)

        // Stamped through the seam like the file and journald inputs' events.
        #expect((event["host"] as? String)?.isEmpty == false, "the host's name is stamped: \(event)")
        #expect(event["site"] as? String == "lisbon-07")
        #expect((event["@timestamp"] as? String)?.hasSuffix("Z") == true)
        let ferryFields = try #require(event["ferry"] as? [String: Any])
        #expect((ferryFields["uptime_seconds"] as? Int).map { $0 >= 1 } == true)
        let queue = try #require(ferryFields["queue"] as? [String: Any])
        #expect((queue["appended_events"] as? Int).map { $0 >= 2 } == true, "the posted event and a metrics event at least: \(queue)")
        #expect((queue["delivered_events"] as? Int).map { $0 >= 1 } == true, "\(queue)")
        let outputs = try #require(queue["outputs"] as? [[String: Any]])
        #expect(outputs.first?["name"] as? String == "default")
        #expect(outputs.first?["state"] as? String == "running")
        let all = counters(event)
        #expect(all.keys.contains { $0.hasPrefix("ferry_input_rejections_total{") && $0.contains(#"input="http""#) },
                "the refused request: \(all.keys.sorted())")
        // Whole numbers, and no gauges (they are only current when /metrics is scraped).
        #expect(all.values.allSatisfy { $0 is Int })
        #expect(!all.keys.contains { $0.hasPrefix("ferry_queue_records") })
    }

    /// One tick without the loop or its clock: the event goes into a real queue with the queue's figures and
    /// the registry's counters as written (also past 2^53); a queue that refuses it loses only that tick.
    @Test func eachTickAppendsOneEventWithTheQueuesFiguresAndTheCounters() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-internal-metrics-tick")
        defer { dir.remove() }
        let logs = RecordingLogHandler.Store()
        let queue = try Queue.open(at: dir.path, logger: logs.logger())
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "ferry_test_total", labels: [("kind", "a")]).increment(by: Int64(9_007_199_254_740_993))
        let intake = Intake(input: "internal_metrics", queue: queue, stamp: StampSettings().stamp(host: "edge-7"), logger: logs.logger())
        let input = InternalMetricsInput(intake: intake, interval: .seconds(60), registry: registry, outputs: [], logger: logs.logger())
        await input.appendOnce()
        await input.appendOnce()
        let lines = try queue.peek(from: 0, maxRecords: 10).records.flatMap { try $0.record.events().map { String(buffer: $0) } }
        #expect(lines.count == 2)
        let second = try #require(lines.last)
        #expect(second.contains(#""ferry_test_total{kind=\"a\"}":9007199254740993"#), "\(second)")
        let event = try #require(try JSONSerialization.jsonObject(with: Data(second.utf8)) as? [String: Any])
        #expect(event["host"] as? String == "edge-7")
        let figures = try #require((event["ferry"] as? [String: Any])?["queue"] as? [String: Any])
        #expect(figures["appended_events"] as? Int == 1, "the first tick's event, stored before the second was made")

        queue.close()
        await input.appendOnce()
        #expect(logs.all.contains { $0.level == .warning && $0.message.contains("internal metrics event not stored") })
    }

    /// The text format's counters, and nothing else of it.
    @Test func countersAreReadFromThePrometheusText() {
        let text = """
            # TYPE ferry_config_reloads_total counter
            ferry_config_reloads_total{result="applied"} 2
            ferry_config_reloads_total{result="invalid"} 0
            # TYPE ferry_queue_records gauge
            ferry_queue_records 17
            # HELP ferry_input_events_total Events.
            # TYPE ferry_input_events_total counter
            ferry_input_events_total{input="http",note="a b"} 1.5e3
            ferry_input_events_total{input="x"} NaN
            ferry_input_events_total{input="big"} 9007199254740993
            """
        let counters = InternalMetricsInput.counters(Array(text.utf8))
        #expect(counters.map(\.series) == [#"ferry_config_reloads_total{result="applied"}"#, #"ferry_config_reloads_total{result="invalid"}"#,
                                            #"ferry_input_events_total{input="http",note="a b"}"#, #"ferry_input_events_total{input="big"}"#])
        #expect(counters.map(\.value) == ["2", "0", "1500", "9007199254740993"])
    }

    @Test func theInputIsOffUnlessConfiguredAndItsIntervalIsReadAndPrinted() throws {
        let on = try ConfigurationLoader.parse("input:\n  internal_metrics: true\n")
        #expect(on.inputs.contains { $0.source == .internalMetrics(InternalMetricsSettings()) })
        let off = try ConfigurationLoader.parse("input:\n  internal_metrics: false\n")
        #expect(!off.inputs.contains { $0.name == "internal_metrics" })
        let tuned = try ConfigurationLoader.parse("input:\n  internal_metrics: { interval: 5m, fields: { env: prod } }\n")
        let input = try #require(tuned.inputs.first { $0.name == "internal_metrics" })
        #expect(input.source == .internalMetrics(InternalMetricsSettings(interval: .seconds(300))))
        #expect(input.stamp.fields.map(\.key) == ["env"])
        // Printed (ferry check-config --print) and read back: the same.
        let reread = try ConfigurationLoader.parse(tuned.redactedYAML, environment: [:])
        #expect(reread.inputs.first { $0.name == "internal_metrics" } == input, "\(reread.inputs)")
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parse("input:\n  internal_metrics: { interval: soon }\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parse("input:\n  internal_metrics: { every: 5s }\n") }
    }
}
