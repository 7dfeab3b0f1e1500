@testable import FerrySyslog
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import Synchronization
import Testing

/// rsyslog's `omrelp` (Debian's `rsyslog` and `rsyslog-relp`) as the client of the RELP server, run as a child
/// with its own configuration, never as the system's syslog, into a real queue through the input seam.
/// rsyslog conflicts with syslog-ng in Debian and would become the machine's syslog daemon if installed, so,
/// like `tools/bench/compare`, the tests use the packages unpacked with `dpkg-deb -x` (`tools/bootstrap`
/// unpacks them into `~/.cache/ferry-rsyslog`; `FERRY_RSYSLOG_ROOT` names another root), or an installed rsyslog.
@Suite(.timeLimit(.minutes(3)), .enabled(if: Rsyslog.find() != nil, "rsyslog with omrelp not found: run tools/bootstrap"))
struct RsyslogRELPTests {
    @Test func omrelpDeliversEveryMessageStoredExactlyOnce() async throws {
        let rsyslog = try #require(Rsyslog.find())
        try await withTemporaryQueue(prefix: "ferry-relp-queue") { queue, _ in
            let intake = Intake(input: "relp", queue: queue, stamp: StampSettings().stamp(host: nil), logger: quietLogger)
            let server = try await RELPServer.bind(configuration: RELPServerConfiguration(name: "relp", address: ListenAddress(host: "127.0.0.1", port: 0)),
                                                   intake: intake, logger: quietLogger)
            let action = #"type="omrelp" target="127.0.0.1" port="\#(server.address!.port!)" windowSize="1024" timeout="20""#
            try await rsyslog.relaying(action: action) { inPort, _ in
                let lines = (0..<2000).map { "relayed \($0)" }
                try await runLogger(["-n", "127.0.0.1", "-P", String(inPort), "-T", "--rfc5424", "--octet-count", "-t", "relay", "--msgid", "R1"],
                                    input: lines.joined(separator: "\n") + "\n")
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events >= 2000 })
                let events = try storedEvents(queue).map { try fields($0) }
                #expect(events.count == 2000)
                #expect(events.map { $0["message"] as? String } == lines)
                #expect(events.allSatisfy { $0["appname"] as? String == "relay" && $0["msgid"] as? String == "R1" && $0["@timestamp"] != nil })
                #expect(events.allSatisfy { $0["source_ip"] as? String == "127.0.0.1" })
                // Group commits: a window of messages per append, not one append per message.
                #expect(queue.stats.records < 2000)
            }
            await server.shutdown()
        }
    }

    /// rsyslog's `omfwd` with RFC 5424 and octet counting (what rsyslog users forward with) into the
    /// syslog input over TCP.
    @Test func omfwdOctetCountedIsStoredCompletely() async throws {
        let rsyslog = try #require(Rsyslog.find())
        try await withTemporaryQueue(prefix: "ferry-omfwd-queue") { queue, _ in
            let intake = Intake(input: "syslog", queue: queue, stamp: StampSettings().stamp(host: nil), logger: quietLogger)
            let server = try await SyslogServer.bind(configuration: SyslogServerConfiguration(name: "syslog", tcp: ListenAddress(host: "127.0.0.1", port: 0)),
                                                     intake: intake, logger: quietLogger)
            let action = #"type="omfwd" target="127.0.0.1" port="\#(server.tcpAddress!.port!)" protocol="tcp" TCP_Framing="octet-counted""#
            try await rsyslog.relaying(action: action) { inPort, _ in
                let lines = (0..<1000).map { "forwarded \($0) [with a bracket] and \u{00e9}" }
                try await runLogger(["-n", "127.0.0.1", "-P", String(inPort), "-T", "--rfc5424", "--octet-count", "-t", "fwd", "-p", "local3.warning"],
                                    input: lines.joined(separator: "\n") + "\n")
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events >= 1000 })
                let events = try storedEvents(queue).map { try fields($0) }
                #expect(events.map { $0["message"] as? String } == lines)
                #expect(events.allSatisfy { $0["appname"] as? String == "fwd" && $0["facility"] as? String == "local3" && $0["severity"] as? String == "warning" })
            }
            await server.shutdown()
        }
    }

    /// A full queue: the message is not answered while it cannot be stored, and is stored and answered
    /// once an output frees room. Checked with a raw RELP client, which sees exactly when `rsp` comes.
    @Test func aFullQueueLeavesTheMessageUnansweredUntilRoomIsFreed() async throws {
        let logs = RecordingLogHandler.Store()
        try await withTemporaryQueue(prefix: "ferry-relp-full", configuration: QueueConfiguration(maxBytes: 1 << 20)) { queue, _ in
            let intake = Intake(input: "relp", queue: queue, stamp: StampSettings().stamp(host: nil), logger: logs.logger(),
                                backoff: Backoff(base: .milliseconds(10), cap: .milliseconds(50)))
            let server = try await RELPServer.bind(configuration: RELPServerConfiguration(name: "relp", address: ListenAddress(host: "127.0.0.1", port: 0)),
                                                   intake: intake, logger: quietLogger)
            // Fill the queue (its output is down): with large batches, then with one small event at a time
            // until even that is refused.
            var rng = SeededGenerator(seed: 19)
            var filler = 0
            for size in [64, 1] {
                while true {
                    let batch = EventBatch(lines: (0..<size).map { i in Array(#"{"filler":\#(i),"pad":"\#(rng.hex(size == 1 ? 10 : 1000))"}"#.utf8) })
                    do {
                        try await queue.append(batch)
                        filler += size
                    } catch let error as QueueError where error.code == .full {
                        break
                    }
                }
            }
            #expect(filler > 0)

            let client = try RELPTestClient(port: server.address!.port!)
            defer { client.close() }
            try client.send(frame(1, "open", RELPServerTests.offer))
            #expect(try await client.next()?.txnr == 1)
            try client.send(frame(2, "syslog", "<13>1 2026-12-02T11:46:05Z h app - - - while full"))
            #expect(try await eventually { logs.all.contains { $0.message.hasPrefix("input paused") } }, "the append never met the full queue")
            #expect(client.nothingReceived(), "answered while the message could not be stored")
            #expect(queue.stats.events == filler)

            // An output delivers the oldest records: room again; the message is stored, then answered.
            let lease = try queue.lease(maxRecords: 8)
            try await queue.acknowledge(lease)
            #expect(try await client.next() == .init(txnr: 2, command: "rsp", data: "200 OK"))
            #expect(try storedEvents(queue).last.map { try fields($0)["message"] as? String } == "while full")
            await server.shutdown()
        }
    }
}

/// The events in the queue, oldest first.
func storedEvents(_ queue: Queue) throws -> [String] {
    var events: [String] = []
    var next: UInt64 = 0
    while true {
        let page = try queue.peek(from: next, maxRecords: 1000)
        if page.records.isEmpty { return events }
        next = page.nextSequence
        events += try page.records.flatMap { try $0.record.events().map { String(buffer: $0) } }
    }
}
