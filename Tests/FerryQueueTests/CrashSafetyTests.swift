import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import Testing

/// Acknowledged means fsynced: a child process appends from many tasks and prints each batch only after
/// `append` returned; it is SIGKILLed at random moments; every printed batch must be there, whole, once.
@Suite struct CrashSafetyTests {
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
                guard parts.count == 3, parts[0] == "ACK", let count = Int(parts[2]) else { continue }
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
}
