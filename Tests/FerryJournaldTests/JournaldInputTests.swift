@testable import FerryJournald
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import MetricsTestKit
import Synchronization
import Testing

/// A sink that keeps what it is given, as the queue would store it (events and position together).
final class RecordingSink: JournaldSink {
    struct Append: Sendable {
        var events: [String]
        var position: JournalPosition
    }

    private let state = Mutex<[Append]>([])
    /// When set, appends after this many report that Ferry stops (false), storing nothing.
    let acceptOnly: Int?

    init(acceptOnly: Int? = nil) { self.acceptOnly = acceptOnly }

    var appends: [Append] { state.withLock { $0 } }
    var messages: [String] {
        appends.flatMap { $0.events }.map { (try? parse(Array($0.utf8)))?["message"] as? String ?? "<none>" }
    }
    /// The cursor of the last position stored.
    var cursor: String? { appends.last.flatMap { try? JournalPosition.cursor(from: $0.position.value) } }

    func appendWaiting(_ events: JournalEvents, position: JournalPosition) async -> Bool {
        var texts: [String] = []
        events.forEach { texts.append(String(decoding: $0, as: UTF8.self)) }
        return state.withLock { appends in
            if let acceptOnly, appends.count >= acceptOnly { return false }
            appends.append(Append(events: texts, position: position))
            return true
        }
    }
}

/// The journald input as a service: start, follow, resume from the stored position, gaps, stop.
@Suite(.timeLimit(.minutes(4))) struct JournaldInputTests {
    func input(_ dir: TemporaryDirectory, name: String = "test", startAt: JournaldInputConfiguration.StartAt = .beginning,
               stored: [UInt8]? = nil, sink: RecordingSink, maxEntries: Int = 4096, logs: RecordingLogHandler.Store = .init(),
               metrics: TestMetrics = TestMetrics()) throws -> JournaldInput {
        try JournaldInput(name: name, configuration: JournaldInputConfiguration(source: .directory(dir.path), startAt: startAt, maxEntriesPerAppend: maxEntries),
                          storedPosition: stored, sink: sink, logger: logs.logger(), metricsFactory: metrics)
    }

    @Test func startAtEndStoresTheLastCursorAtOnceThenStoresNewEntriesWithTheirCursor() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        let path = dir.appending("x.journal")
        try await JournalFiles.write((0..<3).map { TestEntry.message("old \($0)", at: $0) }, to: path)
        let sink = RecordingSink()
        let metrics = TestMetrics()
        try await withServices([try input(dir, startAt: .end, sink: sink, metrics: metrics)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { sink.appends.count == 1 })
            #expect(sink.appends[0].events.isEmpty)
            #expect(sink.appends[0].position.key == Array("journald/test".utf8))
            #expect(sink.cursor == (try await JournalFiles.journalctl(directory: dir.path)).last?["__CURSOR"] as? String)

            try await JournalFiles.write((3..<8).map { TestEntry.message("new \($0)", at: $0) }, to: path)
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 5 })
            #expect(sink.messages == ["new 3", "new 4", "new 5", "new 6", "new 7"])
            #expect(sink.cursor == (try await JournalFiles.journalctl(directory: dir.path)).last?["__CURSOR"] as? String)
        }
        #expect(try metrics.expectCounter("ferry_journald_entries_total", [("input", "test")]).totalValue == 5)
    }

    @Test func entriesInANewFileOfTheFollowedDirectoryAreStoredWithoutAGap() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        try await JournalFiles.write((0..<3).map { TestEntry.message("a\($0)", at: $0) }, to: dir.appending("a.journal"))
        let sink = RecordingSink()
        let metrics = TestMetrics()
        try await withServices([try input(dir, sink: sink, metrics: metrics)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 3 })
            // As journald's rotation does: a new file appears (sd-journal reports the file set changed).
            try await JournalFiles.write((3..<6).map { TestEntry.message("b\($0)", at: $0) }, to: dir.appending("b.journal"))
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 6 })
        }
        #expect(sink.messages == ["a0", "a1", "a2", "b3", "b4", "b5"])
        #expect(try metrics.expectCounter("ferry_journald_gaps_total", [("input", "test")]).totalValue == 0)
    }

    @Test func aRestartFromTheStoredPositionStoresEveryEntryOnceInOrder() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        let path = dir.appending("x.journal")
        try await JournalFiles.write((0..<100).map { TestEntry.message("e\($0)", at: $0) }, to: path)
        let first = RecordingSink()
        try await withServices([try input(dir, sink: first, maxEntries: 7)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { first.messages.count == 100 })
        }
        #expect(first.appends.count == 15)  // 14 × 7 + 2: each append carries the cursor of its last entry
        try await JournalFiles.write((100..<150).map { TestEntry.message("e\($0)", at: $0) }, to: path)

        let second = RecordingSink()
        let logs = RecordingLogHandler.Store()
        try await withServices([try input(dir, stored: first.appends.last!.position.value, sink: second, logs: logs)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { second.messages.count == 50 })
        }
        #expect(first.messages + second.messages == (0..<150).map { "e\($0)" })
        #expect(logs.all.contains { $0.message.contains("resumes after the stored cursor") })
    }

    @Test func aStoredCursorTheJournalNoLongerHasIsLoggedAndCountedAndReadingStartsAtTheOldest() async throws {
        let old = try TemporaryDirectory(prefix: "ferry-journald")
        defer { old.remove() }
        try await JournalFiles.write((0..<3).map { TestEntry.message("gone \($0)", at: $0) }, to: old.appending("x.journal"))
        let lost = try await JournalFiles.journalctl(directory: old.path).last!["__CURSOR"] as! String

        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        try await JournalFiles.write((10..<13).map { TestEntry.message("kept \($0)", at: $0) }, to: dir.appending("y.journal"))
        let sink = RecordingSink()
        let metrics = TestMetrics()
        let logs = RecordingLogHandler.Store()
        let stored = JournalPosition(input: "test", cursor: lost).value
        try await withServices([try input(dir, startAt: .end, stored: stored, sink: sink, logs: logs, metrics: metrics)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 3 })
        }
        #expect(sink.messages == ["kept 10", "kept 11", "kept 12"])  // start_at end does not apply: a cursor was stored
        #expect(try metrics.expectCounter("ferry_journald_gaps_total", [("input", "test")]).totalValue == 1)
        let warning = logs.all.first { $0.level == .warning && $0.message.contains("no longer in the journal") }
        #expect(warning?.metadata["ferry.input.journald.cursor"] == lost)
        #expect(warning?.metadata["ferry.input.name"] == "test")
    }

    @Test func aFileVacuumedWhileBeingFollowedIsACountedGap() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        try await JournalFiles.write((0..<3).map { TestEntry.message("a\($0)", at: $0) }, to: dir.appending("a.journal"))
        let sink = RecordingSink()
        let metrics = TestMetrics()
        try await withServices([try input(dir, sink: sink, metrics: metrics)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 3 })
            // The file holding the last entry read goes, and a new one comes: the position is gone with it.
            try FileManager.default.removeItem(atPath: dir.appending("a.journal"))
            try await JournalFiles.write((5..<7).map { TestEntry.message("b\($0)", at: $0) }, to: dir.appending("b.journal"))
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 5 })
        }
        #expect(sink.messages == ["a0", "a1", "a2", "b5", "b6"])
        #expect(try metrics.expectCounter("ferry_journald_gaps_total", [("input", "test")]).totalValue == 1)
    }

    @Test func binaryValuesAreCounted() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        var entry = TestEntry.message("core", at: 0)
        entry.fields.append(("COREDUMP", [0x7F, 0x45, 0x4C, 0x46, 0x00]))
        try await JournalFiles.write([entry, entry], to: dir.appending("x.journal"))
        let sink = RecordingSink()
        let metrics = TestMetrics()
        try await withServices([try input(dir, sink: sink, metrics: metrics)]) { () async throws in
            #expect(try await eventually(timeout: .seconds(60)) { sink.messages.count == 2 })
        }
        #expect(try metrics.expectCounter("ferry_journald_binary_fields_total", [("input", "test")]).totalValue == 2)
    }

    @Test func whenTheSinkSaysFerryStopsTheInputEndsWithoutStoringMore() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        try await JournalFiles.write((0..<20).map { TestEntry.message("e\($0)", at: $0) }, to: dir.appending("x.journal"))
        let sink = RecordingSink(acceptOnly: 1)
        let input = try input(dir, sink: sink, maxEntries: 5)
        try await input.run()  // returns by itself: the second append was refused
        #expect(sink.messages == ["e0", "e1", "e2", "e3", "e4"])
    }

    @Test func aPositionOfAnUnknownVersionRefusesToStart() throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald")
        defer { dir.remove() }
        #expect(throws: JournaldError.self) { try input(dir, stored: [9, 0x73], sink: RecordingSink()) }
    }
}
