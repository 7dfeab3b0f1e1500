@testable import FerryJournald
import FerryTestSupport
import Foundation
import Testing

/// `ferry-tools journal`'s lag: entries after a stored cursor, on real journal files.
@Suite(.timeLimit(.minutes(2))) struct JournalLagTests {
    @Test func theLagIsTheEntriesAfterTheCursorThatPassTheFilters() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald-lag")
        defer { dir.remove() }
        let entries = (0..<6).map { TestEntry.message("e\($0)", at: $0, [("SYSLOG_IDENTIFIER", $0 % 2 == 0 ? "even" : "odd")]) }
        try await JournalFiles.write(entries, to: dir.appending("x.journal"))
        let cursors = try await JournalFiles.journalctl(directory: dir.path).map { $0["__CURSOR"] as! String }
        let all = JournaldInputConfiguration(source: .directory(dir.path))
        #expect(try JournalLag.measure(cursor: cursors[1], configuration: all) == .behind(entries: 4))
        #expect(try JournalLag.measure(cursor: cursors[5], configuration: all) == .behind(entries: 0))
        let even = JournaldInputConfiguration(source: .directory(dir.path), identifiers: ["even"])
        #expect(try JournalLag.measure(cursor: cursors[1], configuration: even) == .behind(entries: 2))
    }

    @Test func aCursorTheJournalNoLongerHasIsAGapWithEverythingToRead() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald-lag")
        defer { dir.remove() }
        try await JournalFiles.write([TestEntry.message("old", at: 0)], to: dir.appending("a.journal"))
        let lost = try #require(try await JournalFiles.journalctl(directory: dir.path).last?["__CURSOR"] as? String)
        try FileManager.default.removeItem(atPath: dir.appending("a.journal"))
        try await JournalFiles.write((1..<4).map { TestEntry.message("new\($0)", at: $0) }, to: dir.appending("b.journal"))
        #expect(try JournalLag.measure(cursor: lost, configuration: JournaldInputConfiguration(source: .directory(dir.path))) == .gap(entries: 3))
    }
}
