import FerryPipeline
import FerryQueue
import FerryWire
import Logging
import Prometheus
import ServiceLifecycle

/// `input.internal_metrics`: every `interval`, one event with Ferry's own metrics is appended to the queue
/// and travels with the data, so an edge that nobody can scrape (behind NAT, on a mobile link) is seen
/// where its events arrive:
///
///     {"message":"ferry internal metrics","ferry":{"version":…,"uptime_seconds":…,
///      "queue":{… what `/queue` and `ferry-tools stats --json` show, outputs with state and lag …},
///      "counters":{"ferry_config_reloads_total{result=\"applied\"}":1,"ferry_input_rejections_total{…}":3,…}}}
///
/// `host`, `@timestamp` and `fields` come through the seam. `counters` holds every counter of the agent's
/// registry (what `/metrics` serves as `counter`), keyed by its series as Prometheus writes it.
///
/// One try per tick: when the queue is full, that tick's event is not stored (counted as a rejection of
/// this input) rather than waited for; the next tick carries fresh figures, and metrics never hold back
/// the events they describe.
final class InternalMetricsInput: Input, Sendable {
    private let intake: Intake
    private let interval: Duration
    private let registry: PrometheusCollectorRegistry
    private let outputs: [SupervisedOutput]
    private let logger: Logger
    private let startedAt = ContinuousClock.now
    private let ready = Latch()

    init(intake: Intake, interval: Duration, registry: PrometheusCollectorRegistry, outputs: [SupervisedOutput], logger: Logger) {
        self.intake = intake
        self.interval = interval
        self.registry = registry
        self.outputs = outputs
        self.logger = logger
    }

    func started() async -> String {
        await ready.wait()
        return "Own metrics:  one event every \(interval.components.seconds) s into the queue (input.internal_metrics)"
    }

    func run() async throws {
        ready.open()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: self.interval)
                } catch {
                    return
                }
                await self.appendOnce()
            }
        }
    }

    /// Appends one metrics event; a refused append is logged and counted, never waited for.
    func appendOnce() async {
        var batch = intake.batch()
        let event = self.event()
        event.withUnsafeBytes { batch.add(object: $0) }
        do {
            try await intake.append(batch)
        } catch {
            logger.warning("internal metrics event not stored; the next one follows in an interval", metadata: [
                "ferry.queue.error": "\(error.message)",
            ])
        }
    }

    /// The event's JSON object.
    func event() -> [UInt8] {
        let uptime = ContinuousClock.now - startedAt
        let queueJSON = OutputStatus.queueJSON(intake.queue, outputs: outputs)
        var text = "{\"message\":\"ferry internal metrics\",\"ferry\":{\"version\":\(QueueStats.string(Agent.version))"
        text += ",\"uptime_seconds\":\(uptime.components.seconds),\"queue\":\(queueJSON),\"counters\":{"
        text += Self.counters(registry.emitToBuffer()).map { "\(QueueStats.string($0.series)):\($0.value)" }.joined(separator: ",")
        text += "}}}"
        return Array(text.utf8)
    }

    /// The counter series of Prometheus' text format: `(series, value)` for each sample line of a metric
    /// whose `# TYPE` is `counter`.
    static func counters(_ exposition: [UInt8]) -> [(series: String, value: String)] {
        var result: [(String, String)] = []
        var counterNames: Set<Substring> = []
        let text = String(decoding: exposition, as: UTF8.self)
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4, parts[3] == "counter" { counterNames.insert(parts[2]) }
                continue
            }
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " ") else { continue }
            let series = line[..<space]
            let name = series.prefix { $0 != "{" }
            let value = line[line.index(after: space)...]
            // Digits are kept as written (a Double would round counters past 2^53); another finite number
            // is written as JSON writes it; NaN and infinities are left out rather than made invalid JSON.
            guard counterNames.contains(name) else { continue }
            if !value.isEmpty, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                result.append((String(series), String(value)))
            } else if let number = Double(value), number.isFinite {
                result.append((String(series), Int64(exactly: number).map(String.init) ?? String(number)))
            }
        }
        return result
    }
}

/// The run state of each output as `/queue` and the internal metrics show it.
enum OutputStatus {
    /// What `/queue` answers: the queue's figures with each output's run state.
    static func queueJSON(_ queue: Queue, outputs: [SupervisedOutput]) -> String {
        queue.stats.json(agentID: queue.agentID, path: queue.path, outputState: { fields(of: $0, in: outputs) })
    }

    static func fields(of name: String, in outputs: [SupervisedOutput]) -> [(String, String)] {
        guard let status = outputs.first(where: { $0.name == name })?.status else { return [] }
        return [("state", QueueStats.string(status.state.rawValue)), ("restarts", "\(status.restarts)"),
                ("last_error", status.lastError.map(QueueStats.string) ?? "null")]
    }
}
