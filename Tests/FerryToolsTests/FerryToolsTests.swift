import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import Testing

/// `ferry-tools` as a real process, on queues made by the tests.
@Suite struct FerryToolsTests {
    let tools = builtProductsDirectory() + "/ferry-tools"
    let quiet = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }

    func makeQueue(_ dir: TemporaryDirectory, batches: Int = 20, events: Int = 25) async throws -> [String] {
        let queue = try Queue.open(at: dir.path, logger: quiet)
        defer { queue.close() }
        var ids: [String] = []
        for batch in 0..<batches {
            let lines = (0..<events).map { #"{"id":"x-\#(batch)-\#($0)","msg":"tools test \#(batch)"}"# }
            ids += (0..<events).map { "x-\(batch)-\($0)" }
            _ = try await queue.append(EventBatch(lines: lines.map { Array($0.utf8) }))
        }
        return ids
    }

    func field(_ json: String, _ name: String) -> String? {
        guard let start = json.range(of: "\"\(name)\":")?.upperBound else { return nil }
        return String(json[start...].prefix { $0 != "," && $0 != "}" })
    }

    @Test func statsCountWhatWasAppendedEvenWhileTheQueueIsHeld() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        _ = try await makeQueue(dir)
        // Held exclusively by "the agent" (this process) while the tool reads.
        let agent = try Queue.open(at: dir.path, logger: quiet)
        defer { agent.close() }
        _ = try await agent.append(EventBatch(lines: [Array(#"{"id":"late"}"#.utf8)]))
        let stats = try await run(tools, ["stats", "--json", "--data-dir", dir.path])
        #expect(stats.status == 0, "\(stats.errors)")
        #expect(field(stats.output, "records") == "21")
        #expect(field(stats.output, "events") == "501")
        #expect(field(stats.output, "agent_id") == "\"\(agent.agentID)\"")
        let human = try await run(tools, ["stats", "--data-dir", dir.path])
        #expect(human.output.contains("events              501"))
        // What the dropped line counts, whatever the policy (the queue does not know the agent's).
        #expect(human.output.contains("dropped             0 events deleted unsent (by when_full: drop_oldest to make room, or by queue.max_age)"))
        // A command that changes the queue refuses while it is held, and says why.
        let purge = try await run(tools, ["purge", "--yes", "--data-dir", dir.path])
        #expect(purge.status == 1)
        #expect(purge.errors.contains("stop") && purge.errors.contains("in use"))
        #expect(agent.stats.records == 21)
    }

    @Test func exportThenImportIsIdentical() async throws {
        let a = try TemporaryDirectory(prefix: "ferry-tools"), b = try TemporaryDirectory(prefix: "ferry-tools")
        defer { a.remove(); b.remove() }
        let ids = try await makeQueue(a)
        let first = a.appending("export.ndjson"), second = b.appending("export.ndjson")
        let export = try await run(tools, ["export", "--data-dir", a.path, "-o", first])
        #expect(export.status == 0 && export.errors.contains("exported 500 events"))
        let imported = try await run(tools, ["import", "--data-dir", b.appending("q"), first])
        #expect(imported.status == 0, "\(imported.errors)")
        let again = try await run(tools, ["export", "--data-dir", b.appending("q"), "-o", second])
        #expect(again.status == 0)
        let original = try Data(contentsOf: URL(fileURLWithPath: first))
        #expect(try Data(contentsOf: URL(fileURLWithPath: second)) == original)
        #expect(String(decoding: original, as: UTF8.self).split(separator: "\n").count == ids.count)
        // gzip export decodes to the same bytes; a range by sequence exports a part.
        let gz = a.appending("export.ndjson.gz")
        _ = try await run(tools, ["export", "--gzip", "--data-dir", a.path, "-o", gz])
        let gunzip = try await run("/bin/gzip", ["-dc", gz])
        #expect(Data(gunzip.stdout) == original)
        let part = try await run(tools, ["export", "--from", "3", "--to", "4", "--data-dir", a.path])
        #expect(part.output.split(separator: "\n").count == 50)
        // Times are RFC 3339, whole: every record was made between these two; trailing junk is refused.
        let byTime = try await run(tools, ["export", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T01:00:00.5+01:00", "--data-dir", a.path])
        #expect(byTime.status == 0 && byTime.output.split(separator: "\n").count == ids.count, "\(byTime.errors)")
        let none = try await run(tools, ["export", "--to", "2000-01-01T00:00:00.000Z", "--data-dir", a.path])
        #expect(none.status == 0 && none.output.isEmpty, "\(none.errors)")
        let junk = try await run(tools, ["export", "--from", "2026-11-23T10:00:00Zjunk", "--data-dir", a.path])
        #expect(junk.status != 0 && junk.errors.contains("neither a sequence number nor an ISO 8601 time"), "\(junk.errors)")
        // A bad import file stores nothing and names the line.
        let bad = a.appending("bad.ndjson")
        try "{\"ok\":1}\n{\"broken\":\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try await run(tools, ["import", "--data-dir", b.appending("q"), bad])
        #expect(refused.status == 1 && refused.errors.contains("line 2"))
    }

    @Test func verifyFindsADamagedRecordAndRepairRemovesOnlyIt() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        _ = try await makeQueue(dir, batches: 10, events: 40)
        // Damage record 6's payload in data.mdb, wherever LMDB keeps a copy.
        let reader = try Queue.open(at: dir.path, logger: quiet)
        let victim = try reader.peek(from: 6, maxRecords: 1).records[0]
        reader.close()
        let value = Array(victim.record.encoded().readableBytesView)
        let needle = Data(value[(value.count / 2)..<(value.count / 2 + 24)])
        var data = try Data(contentsOf: URL(fileURLWithPath: dir.appending("data.mdb")))
        var search = data.startIndex
        var flipped = 0
        while let range = data.range(of: needle, in: search..<data.endIndex) {
            data[range.lowerBound + 3] ^= 0x40
            flipped += 1
            search = range.upperBound
        }
        try #require(flipped > 0)
        try data.write(to: URL(fileURLWithPath: dir.appending("data.mdb")))

        let verify = try await run(tools, ["verify", "--data-dir", dir.path])
        #expect(verify.status == 1)
        #expect(verify.output.contains("record 6:"))
        #expect(verify.output.split(separator: "\n").filter { $0.hasPrefix("record ") }.count == 1)

        let repair = try await run(tools, ["repair", "--yes", "--data-dir", dir.path])
        #expect(repair.status == 0, "\(repair.errors)")
        #expect(repair.output.contains("kept 9 records (360 events)"))
        #expect(repair.output.contains("quarantined record 6"))
        let after = try await run(tools, ["verify", "--data-dir", dir.path])
        #expect(after.status == 0 && after.output.contains("all good"))
        let contents = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(contents.contains { $0.hasPrefix("data.mdb.before-repair-") })
        #expect(contents.contains { $0.hasPrefix("quarantine-") })
        let queue = try Queue.open(at: dir.path, logger: quiet)
        defer { queue.close() }
        #expect(queue.stats.records == 9 && queue.stats.events == 360)
        #expect(try queue.peek(maxRecords: 100).records.map(\.sequence) == [1, 2, 3, 4, 5, 7, 8, 9, 10])
    }

    @Test func tailFollowsRecordsAppendedByAnotherProcess() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        _ = try await makeQueue(dir, batches: 2, events: 2)
        let agent = try Queue.open(at: dir.path, logger: quiet)
        defer { agent.close() }
        let tail = try ChildProcess(executable: tools, arguments: ["tail", "-f", "-n", "1", "--seconds", "30", "--data-dir", dir.path])
        defer { tail.kill() }
        #expect(try await tail.waitForLines(timeout: .seconds(20)) { $0.contains { $0.contains("x-1-1") } })
        _ = try await agent.append(EventBatch(lines: [Array(#"{"id":"fresh-1"}"#.utf8)]))
        #expect(try await tail.waitForLines(timeout: .seconds(20)) { $0.contains { $0.contains("fresh-1") } })
    }

    @Test func deadRecordsAreListedShownRequeuedAndPurged() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        _ = try await makeQueue(dir, batches: 4, events: 3)
        do {
            let queue = try Queue.open(at: dir.path, logger: quiet)
            defer { queue.close() }
            _ = try await queue.moveToDead([2, 3], reason: "HTTP 400 from aggregator: mapping error")
        }
        let list = try await run(tools, ["dlq", "list", "--data-dir", dir.path])
        #expect(list.output.split(separator: "\n").count == 2)
        #expect(list.output.contains("HTTP 400 from aggregator"))
        let show = try await run(tools, ["dlq", "show", "3", "--data-dir", dir.path])
        #expect(show.output.contains("x-2-0") && show.output.contains("mapping error"))
        let requeue = try await run(tools, ["dlq", "requeue", "2", "--data-dir", dir.path])
        #expect(requeue.status == 0 && requeue.output.contains("requeued 1"))
        let refused = try await run(tools, ["dlq", "purge", "--all", "--data-dir", dir.path])
        #expect(refused.status == 1 && refused.errors.contains("--yes"))
        let purged = try await run(tools, ["dlq", "purge", "--all", "--yes", "--data-dir", dir.path])
        #expect(purged.output.contains("deleted 1 dead records"))
        let stats = try await run(tools, ["stats", "--json", "--data-dir", dir.path])
        #expect(field(stats.output, "records") == "3" && field(stats.output, "dead_records") == "0")
    }

    @Test func compactGivesSpaceBack() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        _ = try await makeQueue(dir, batches: 200, events: 50)
        let purge = try await run(tools, ["purge", "--yes", "--data-dir", dir.path])
        #expect(purge.status == 0 && purge.output.contains("deleted 200 records"))
        let before = try FileManager.default.attributesOfItem(atPath: dir.appending("data.mdb"))[.size] as! Int
        let compact = try await run(tools, ["compact", "--data-dir", dir.path])
        #expect(compact.status == 0, "\(compact.errors)")
        let after = try FileManager.default.attributesOfItem(atPath: dir.appending("data.mdb"))[.size] as! Int
        #expect(after < before / 4)
        let queue = try Queue.open(at: dir.path, logger: quiet)
        defer { queue.close() }
        #expect(queue.stats.records == 0 && queue.stats.appendedEvents == 10_000)
    }

    @Test func aDirectoryThatIsNotAQueueIsAClearError() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools")
        defer { dir.remove() }
        let stats = try await run(tools, ["stats", "--data-dir", dir.path])
        #expect(stats.status == 1 && stats.errors.contains("no queue in"))
    }
}
