import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import Testing

/// Acknowledged means fsynced: a child process appends from many tasks and prints each batch only after
/// `append` returned; it is SIGKILLed at random moments; every printed batch must be there, whole, once.
@Suite(.tags(.long), .timeLimit(.minutes(5))) struct CrashSafetyTests {
    @Test func acknowledgedEventsSurviveSigkill() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-crash")
        defer { dir.remove() }
        let executable = builtProductsDirectory() + "/ferry-crash-appender"
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-crash-appender first (swift build)")

        var acknowledged: [String: Int] = [:]  // batch id → events
        var rng = SystemRandomNumberGenerator()
        let kills = 20
        for round in 0..<kills {
            let child = try ChildProcess(executable: executable, arguments: [dir.path, "r\(round)", "16", "60"])
            // Kill after a random number of acknowledged batches: a moment when 16 appenders are mid-write.
            let target = Int.random(in: 1...400, using: &rng)
            let reached = try await child.waitForLines(timeout: .seconds(60)) { lines in
                lines.lazy.filter { $0.hasPrefix("ACK ") }.count >= target
            }
            if round == 0 {
                // While the child runs, the directory is its own.
                do {
                    let intruder = try Queue.open(at: dir.path, logger: RecordingLogHandler.Store().logger())
                    intruder.close()
                    Issue.record("a second process opened a queue held by another")
                } catch {
                    #expect(error.code == .locked)
                }
            }
            child.kill(SIGKILL)
            try #require(reached, "round \(round): child stopped before \(target) acknowledgements: \(child.lines.suffix(3))")
            for line in child.lines {
                let parts = line.split(separator: " ")
                if parts.first == "ERR" { Issue.record("append failed in the child: \(line)") }
                guard parts.count == 5, parts[0] == "ACK", let count = Int(parts[2]) else { continue }
                acknowledged[String(parts[1])] = count
            }

            // The environment opens cleanly after every kill, and holds every acknowledged event once.
            let queue = try Queue.open(at: dir.path, logger: RecordingLogHandler.Store().logger())
            defer { queue.close() }
            var seen: [String: Int] = [:]  // event id → times found
            var batches: [String: (expected: Int, found: Int)] = [:]
            var next: UInt64 = 0
            while true {
                let page = try queue.peek(from: next, maxRecords: 1000)
                #expect(page.corrupt.isEmpty, "damaged records after kill \(round): \(page.corrupt.map(\.sequence))")
                if page.records.isEmpty && page.corrupt.isEmpty { break }
                next = page.nextSequence
                for stored in page.records {
                    for line in try stored.record.events() {
                        let fields = try #require(generatedEventFields(String(buffer: line)))
                        seen[fields.id, default: 0] += 1
                        let batch = String(fields.id[..<fields.id.range(of: "-e", options: .backwards)!.lowerBound])
                        batches[batch, default: (fields.count, 0)].found += 1
                    }
                }
            }
            let duplicates = seen.filter { $0.value > 1 }
            #expect(duplicates.isEmpty, "events stored twice: \(duplicates.keys.prefix(5))")
            // Stored batches are whole: a kill never leaves part of a batch.
            let partial = batches.filter { $0.value.found != $0.value.expected }
            #expect(partial.isEmpty, "partial batches after kill \(round): \(partial.prefix(5))")
            // Every acknowledged batch is there.
            let missing = acknowledged.filter { batches[$0.key]?.found != $0.value }
            #expect(missing.isEmpty, "acknowledged batches missing after kill \(round): \(missing.keys.prefix(5))")
            #expect(queue.stats.events == UInt64(seen.count))
        }
        #expect(acknowledged.count >= kills)
    }

    /// Three consumers settle records out of order (acknowledge, bury, release) while appenders write; the
    /// child is SIGKILLed 20 times. No consumer is ever handed a record it settled before a kill, no record
    /// is deleted while a consumer still needs it, and every consumer gets every acknowledged record.
    @Test func everyConsumerGetsEveryAcknowledgedRecordAcrossSigkill() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-crash-consumers")
        defer { dir.remove() }
        let executable = builtProductsDirectory() + "/ferry-crash-appender"
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-crash-appender first (swift build)")
        let names = ["c0", "c1", "c2"]
        var appended = Set<UInt64>()
        var settled: [String: Set<UInt64>] = [:]   // committed: must never be handed out again
        var settling: [String: Set<UInt64>] = [:]  // asked for, perhaps cut by the kill
        var rehanded: [String] = []
        var rng = SystemRandomNumberGenerator()
        let kills = 20
        for round in 0..<kills {
            let child = try ChildProcess(executable: executable, arguments: [dir.path, "k\(round)", "4", "60", "\(names.count)"])
            let target = Int.random(in: 20...200, using: &rng)
            let reached = try await child.waitForLines(timeout: .seconds(60)) { lines in
                lines.lazy.filter { $0.hasPrefix("ACK ") }.count >= target && lines.lazy.filter { $0.hasPrefix("SETTLED ") }.count >= 3
            }
            child.kill(SIGKILL)
            try #require(reached, "round \(round): child stopped early: \(child.lines.suffix(3))")
            for line in child.lines {
                let parts = line.split(separator: " ").map(String.init)
                guard let kind = parts.first else { continue }
                switch kind {
                case "ERR":
                    Issue.record("the child failed: \(line)")
                case "ACK":
                    if parts.count == 5, let first = UInt64(parts[3]), let last = UInt64(parts[4]), first <= last { appended.formUnion(first...last) }
                case "LEASED", "SETTLING", "SETTLED":
                    let consumer = parts[1]
                    let sequences = parts.dropFirst(2).compactMap(UInt64.init)
                    if kind == "LEASED" {
                        rehanded += sequences.filter { settled[consumer, default: []].contains($0) }.map { "\(consumer):\($0) in round \(round)" }
                    } else if kind == "SETTLING" {
                        settling[consumer, default: []].formUnion(sequences)
                    } else {
                        settled[consumer, default: []].formUnion(sequences)
                    }
                default:
                    continue
                }
            }
        }
        #expect(rehanded.isEmpty, "records handed again after they were settled: \(rehanded.prefix(5))")

        // Drain every consumer: what each gets now plus what it settled covers every acknowledged record.
        var configuration = QueueConfiguration()
        configuration.consumers = names.map { ConsumerSettings(name: $0) }
        let queue = try Queue.open(at: dir.path, configuration: configuration, logger: RecordingLogHandler.Store().logger())
        defer { queue.close() }
        for name in names {
            let consumer = try queue.consumer(named: name)
            var drained = Set<UInt64>()
            while true {
                let lease = try consumer.lease(maxRecords: 1000)
                if lease.isEmpty { break }
                #expect(lease.corrupt.isEmpty)
                let again = lease.sequences.filter { settled[name, default: []].contains($0) || drained.contains($0) }
                #expect(again.isEmpty, "\(name) was handed settled records after the kills: \(again.prefix(5))")
                drained.formUnion(lease.sequences)
                try await consumer.acknowledge(lease)
            }
            let lost = appended.subtracting(drained).subtracting(settled[name, default: []]).subtracting(settling[name, default: []])
            #expect(lost.isEmpty, "\(name) never got acknowledged records: \(lost.sorted().prefix(5))")
        }
        // Every consumer is done with every record: none is left waiting.
        let stats = queue.stats
        #expect(stats.records == 0)
        #expect(stats.outputs.map(\.pendingEvents) == [0, 0, 0])
        #expect(appended.count >= kills * 20)
    }
}
