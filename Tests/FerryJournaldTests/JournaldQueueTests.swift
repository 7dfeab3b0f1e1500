@testable import FerryJournald
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import MetricsTestKit
import Testing

/// The input through the seam into a real queue (LMDB on disk): events stamped, the cursor stored in the
/// transaction of the entries, restarts after reopening the queue resuming from it, a full queue pausing reading.
@Suite(.timeLimit(.minutes(5))) struct JournaldQueueTests {
    /// A journald input named `journald` on `queue`, through the seam, reading the journal in `journal`.
    func queueInput(_ journal: TemporaryDirectory, queue: Queue, stamp: StampSettings = StampSettings(),
                    startAt: JournaldInputConfiguration.StartAt = .beginning, maxEntries: Int = 4096,
                    logs: RecordingLogHandler.Store = .init(), metrics: TestMetrics = TestMetrics()) throws -> JournaldInput {
        let intake = Intake(input: "journald", queue: queue, stamp: stamp.stamp(host: "test-host"), logger: logs.logger(),
                            backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(50)))
        return try JournaldInput(intake: intake, configuration: JournaldInputConfiguration(source: .directory(journal.path), startAt: startAt,
                                                                                           maxEntriesPerAppend: maxEntries),
                                 logger: logs.logger(), metricsFactory: metrics)
    }

    /// The stored cursor of the input named `journald`, nil when none.
    func storedCursor(_ queue: Queue) throws -> String? {
        let key = JournalPosition.key(input: "journald")
        return try queue.positions(withPrefix: key).first { $0.key == key }?.value.map { try JournalPosition.cursor(from: $0) }
    }

    @Test func eventsCarryTheEntrysFieldsHostAndConfiguredFieldsAndTheCursorIsStoredWithThem() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        var core = TestEntry.message("crashed", at: 1, [("_SYSTEMD_UNIT", "app.service"), ("SYSLOG_IDENTIFIER", "app"), ("_PID", "42"), ("PRIORITY", "2")])
        core.fields.append(("COREDUMP", [0x7F, 0x45, 0x4C, 0x46, 0x00]))
        try await JournalFiles.write([TestEntry.message("hello", at: 0, [("PRIORITY", "6"), ("CUSTOM", "x")]), core], to: journal.appending("x.journal"))
        let oracle = try await JournalFiles.journalctl(directory: journal.path)
        try await withTemporaryQueue(prefix: "ferry-journald-queue") { queue, _ in
            let stamp = StampSettings(fields: [.init(key: "env", value: "prod"), .init(key: "message", value: "not-this")])
            try await withServices([try queueInput(journal, queue: queue, stamp: stamp)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 2 })
            }
            let events = try storedEvents(queue).map { try parse(Array($0.utf8)) }
            try #require(events.count == 2)
            #expect(events[0]["message"] as? String == "hello")
            // The entry's realtime, not the time Ferry read it.
            #expect(events[0]["@timestamp"] as? String == "2023-11-14T22:13:20.000000Z")
            #expect(events[0]["severity"] as? String == "info")
            #expect(events[0]["host"] as? String == "test-host")
            #expect(events[0]["env"] as? String == "prod")
            #expect((events[0]["journald"] as? [String: Any])?["CUSTOM"] as? String == "x")
            #expect(events[1]["message"] as? String == "crashed")
            #expect(events[1]["unit"] as? String == "app.service")
            #expect(events[1]["identifier"] as? String == "app")
            #expect(events[1]["pid"] as? Int == 42)
            #expect(events[1]["severity"] as? String == "crit")
            let journald = try #require(events[1]["journald"] as? [String: Any])
            #expect((journald["COREDUMP"] as? [String: Any])?["base64"] as? String == "f0VMRgA=")
            #expect(journald["_BOOT_ID"] as? String == TestEntry.boot)
            #expect(try storedCursor(queue) == oracle.last?["__CURSOR"] as? String)
        }
    }

    @Test func eachAppendStoresTheCursorOfItsLastEntryInTheSameTransaction() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        try await JournalFiles.write((0..<10).map { TestEntry.message("e\($0)", at: $0) }, to: journal.appending("x.journal"))
        let cursors = try await JournalFiles.journalctl(directory: journal.path).map { $0["__CURSOR"] as! String }
        try await withTemporaryQueue(prefix: "ferry-journald-queue") { queue, _ in
            // Three entries per append: whenever the queue holds n events, the cursor is entry n's.
            let input = try queueInput(journal, queue: queue, maxEntries: 3)
            var seen: [(UInt64, String?)] = []
            try await withServices([input]) { () async throws in
                let deadline = ContinuousClock.now + .seconds(20)
                while queue.stats.events < 10 && ContinuousClock.now < deadline {
                    // The same cursor before and after reading the count: no commit came in between, so the count
                    // is the one committed with that cursor.
                    let before = try storedCursor(queue)
                    let events = queue.stats.events
                    if try storedCursor(queue) == before { seen.append((events, before)) }
                    await queue.waitForAppend(timeout: .milliseconds(50))
                }
            }
            #expect(queue.stats.events == 10)
            #expect(!seen.isEmpty)
            for (events, cursor) in seen where events > 0 {
                #expect(cursor == cursors[Int(events) - 1], "after \(events) events")
            }
            #expect(try storedCursor(queue) == cursors.last)
        }
    }

    @Test func aRestartAfterReopeningTheQueueResumesAfterTheStoredCursorWithoutDuplicates() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        let data = try TemporaryDirectory(prefix: "ferry-journald-queue")
        defer { data.remove() }
        let path = journal.appending("x.journal")
        try await JournalFiles.write((0..<5).map { TestEntry.message("a\($0)", at: $0) }, to: path)
        do {
            let queue = try Queue.open(at: data.path, configuration: QueueConfiguration())
            defer { queue.close() }
            try await withServices([try queueInput(journal, queue: queue)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 5 })
            }
        }
        // Written while Ferry is stopped: read at the next start, after what was stored.
        try await JournalFiles.write((5..<8).map { TestEntry.message("b\($0)", at: $0) }, to: path)
        let queue = try Queue.open(at: data.path, configuration: QueueConfiguration())
        defer { queue.close() }
        try await withServices([try queueInput(journal, queue: queue)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 8 })
            try await JournalFiles.write([TestEntry.message("c8", at: 8)], to: path)
            #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 9 })
        }
        let messages = try storedEvents(queue).map { try parse(Array($0.utf8))["message"] as? String ?? "<none>" }
        #expect(messages == ["a0", "a1", "a2", "a3", "a4", "b5", "b6", "b7", "c8"])
    }

    @Test func startAtEndStoresTheLastCursorAtOnceSoEntriesWrittenWhileStoppedAreRead() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        let path = journal.appending("x.journal")
        try await JournalFiles.write((0..<3).map { TestEntry.message("old\($0)", at: $0) }, to: path)
        try await withTemporaryQueue(prefix: "ferry-journald-queue") { queue, _ in
            try await withServices([try queueInput(journal, queue: queue, startAt: .end)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { (try? storedCursor(queue)) != nil })
            }
            #expect(queue.stats.events == 0)
            try await JournalFiles.write([TestEntry.message("while stopped", at: 3)], to: path)
            try await withServices([try queueInput(journal, queue: queue, startAt: .end)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 1 })
            }
            #expect(try storedEvents(queue).map { try parse(Array($0.utf8))["message"] as? String } == ["while stopped"])
        }
    }

    @Test func aStoredCursorTheJournalNoLongerHasFallsBackToTheOldestEntryLoggedAndCounted() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        try await JournalFiles.write((0..<3).map { TestEntry.message("gone\($0)", at: $0) }, to: journal.appending("a.journal"))
        try await withTemporaryQueue(prefix: "ferry-journald-queue") { queue, _ in
            try await withServices([try queueInput(journal, queue: queue)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 3 })
            }
            // Vacuumed while Ferry was stopped: the file with the stored cursor is gone, newer entries remain.
            try FileManager.default.removeItem(atPath: journal.appending("a.journal"))
            try await JournalFiles.write((3..<5).map { TestEntry.message("kept\($0)", at: $0) }, to: journal.appending("b.journal"))
            let logs = RecordingLogHandler.Store()
            let metrics = TestMetrics()
            try await withServices([try queueInput(journal, queue: queue, logs: logs, metrics: metrics)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { queue.stats.events == 5 })
            }
            #expect(try metrics.expectCounter("ferry_journald_gaps_total", [("input", "journald")]).totalValue == 1)
            #expect(logs.all.contains { $0.level == .warning && $0.message.contains("no longer in the journal") })
            #expect(try storedEvents(queue).map { try parse(Array($0.utf8))["message"] as? String } == ["gone0", "gone1", "gone2", "kept3", "kept4"])
        }
    }

    @Test func aFullQueuePausesReadingAndLosesNothing() async throws {
        let journal = try TemporaryDirectory(prefix: "ferry-journald")
        defer { journal.remove() }
        let count = 3000
        // Random text: the queue compresses records, and repeated text would fit in it whole.
        var rng = SystemRandomNumberGenerator()
        let texts = (0..<count).map { i in "m\(i) " + (0..<20).map { _ in String(rng.next(), radix: 36) }.joined(separator: " ") }
        try await JournalFiles.write((0..<count).map { TestEntry.message(texts[$0], at: $0) }, to: journal.appending("x.journal"))
        let logs = RecordingLogHandler.Store()
        // Room for a few appends only: the input must wait for the consumer below.
        try await withTemporaryQueue(prefix: "ferry-journald-queue", configuration: QueueConfiguration(maxBytes: 96 << 10), logs: logs) { queue, _ in
            var consumed: [String] = []
            try await withServices([try queueInput(journal, queue: queue, maxEntries: 50, logs: logs)]) { () async throws in
                #expect(try await eventually(timeout: .seconds(60)) { logs.all.contains { $0.message.hasPrefix("input paused") } })
                // Nothing was read past the full queue.
                #expect(queue.stats.events < UInt64(count))
                let deadline = ContinuousClock.now + .seconds(60)
                while consumed.count < count && ContinuousClock.now < deadline {
                    let lease = try queue.lease(maxRecords: 64)
                    if lease.records.isEmpty {
                        await queue.waitForAppend(timeout: .milliseconds(200))
                        continue
                    }
                    for stored in lease.records {
                        for line in try stored.record.events() { consumed.append(try parse(Array(String(buffer: line).utf8))["message"] as? String ?? "<none>") }
                    }
                    try await queue.acknowledge(lease)
                }
            }
            #expect(consumed == texts, "every entry once, in order")
        }
    }

    @Test func aJournalThatCannotBeOpenedRefusesToStart() async throws {
        try await withTemporaryQueue(prefix: "ferry-journald-queue") { queue, dir in
            let intake = Intake(input: "journald", queue: queue, stamp: StampSettings().stamp(host: nil), logger: RecordingLogHandler.Store().logger())
            let missing = JournaldInputConfiguration(source: .directory(dir.appending("no-such-journal")))
            #expect(throws: JournaldError.self) { try JournaldInput(intake: intake, configuration: missing, logger: RecordingLogHandler.Store().logger()) }
        }
    }
}

/// Every event in `queue`, in order.
func storedEvents(_ queue: Queue) throws -> [String] {
    var events: [String] = []
    var next: UInt64 = 0
    while true {
        let page = try queue.peek(from: next, maxRecords: 1000)
        if page.records.isEmpty && page.corrupt.isEmpty { return events }
        next = page.nextSequence
        for stored in page.records {
            for line in try stored.record.events() { events.append(String(buffer: line)) }
        }
    }
}
