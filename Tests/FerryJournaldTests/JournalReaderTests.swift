@testable import FerryJournald
import FerryTestSupport
import FerryWire
import Foundation
import Testing

/// The reader against real journal files written by systemd-journal-remote, with `journalctl` as the oracle.
@Suite(.timeLimit(.minutes(2))) struct JournalReaderTests {
    func withJournalDirectory<R>(_ body: (TemporaryDirectory) async throws -> R) async throws -> R {
        let dir = try TemporaryDirectory(prefix: "ferry-journal")
        defer { dir.remove() }
        return try await body(dir)
    }

    func reader(_ dir: TemporaryDirectory, units: [String] = [], identifiers: [String] = [], matches: [String] = []) throws -> JournalReader {
        try JournalReader(configuration: JournaldInputConfiguration(source: .directory(dir.path), units: units, identifiers: identifiers, matches: matches))
    }

    /// Every event the reader has now, in order, validated as JSON.
    func readAll(_ reader: JournalReader, maxEntries: Int = 1000) throws -> (events: [[String: Any]], cursor: String?) {
        var events: [[String: Any]] = []
        var cursor: String?
        while true {
            let batch = try reader.read(maxEntries: maxEntries, maxBytes: 1 << 20)
            #expect(batch.failure == nil)
            if batch.events.isEmpty { return (events, cursor) }
            try batch.events.forEach { try JSONValidator.validateObject($0) }
            for index in 0..<batch.events.count { events.append(try parse(batch.events[index])) }
            cursor = batch.cursor
        }
    }

    func messages(_ events: [[String: Any]]) -> [String] { events.map { $0["message"] as? String ?? "<none>" } }

    @Test func eventsMatchWhatJournalctlReads() async throws {
        try await withJournalDirectory { dir in
            let entries = (0..<50).map { i in
                TestEntry.message("line \(i) with \"quotes\" and é", at: i, [
                    ("_SYSTEMD_UNIT", "app-\(i % 3).service"), ("SYSLOG_IDENTIFIER", "app"), ("_PID", "\(1000 + i)"),
                    ("PRIORITY", "\(i % 8)"), ("_HOSTNAME", "edge-01"), ("CUSTOM_FIELD", "v\(i)"),
                ])
            }
            try await JournalFiles.write(entries, to: dir.appending("x.journal"))
            let oracle = try await JournalFiles.journalctl(directory: dir.path)
            let reader = try reader(dir)
            #expect(try reader.start(storedCursor: nil, startAt: .beginning) == .beginning)
            let (events, cursor) = try readAll(reader, maxEntries: 7)  // several batches
            #expect(events.count == 50)
            #expect(cursor == oracle.last?["__CURSOR"] as? String)
            for (event, expected) in zip(events, oracle) {
                #expect(event["message"] as? String == expected["MESSAGE"] as? String)
                #expect(event["unit"] as? String == expected["_SYSTEMD_UNIT"] as? String)
                #expect(event["identifier"] as? String == expected["SYSLOG_IDENTIFIER"] as? String)
                #expect(event["pid"] as? Int == Int(expected["_PID"] as! String))
                #expect(event["severity"] as? String == SyslogNames.severity(Int(expected["PRIORITY"] as! String)!))
                let journald = event["journald"] as! [String: Any]
                #expect(journald["_HOSTNAME"] as? String == "edge-01")
                #expect(journald["_BOOT_ID"] as? String == TestEntry.boot)
                #expect(journald["CUSTOM_FIELD"] as? String == expected["CUSTOM_FIELD"] as? String)
                // The realtime timestamp, to the microsecond.
                let micros = UInt64(expected["__REALTIME_TIMESTAMP"] as! String)!
                var stamp: [UInt8] = []
                Timestamp.appendRFC3339(seconds: Int64(micros / 1_000_000), fraction: Int(micros % 1_000_000), digits: 6, to: &stamp)
                #expect(event["@timestamp"] as? String == String(decoding: stamp, as: UTF8.self))
            }
        }
    }

    @Test func aBinaryValueIsBase64OfTheBytesJournalctlShows() async throws {
        try await withJournalDirectory { dir in
            var entry = TestEntry.message("with a binary field", at: 0)
            let bytes: [UInt8] = [0x00, 0x01, 0xFF, 0xFE, 0x0A, 0x41]
            entry.fields.append(("BLOB", bytes))
            entry.fields.append(("MULTILINE", Array("one\ntwo".utf8)))
            try await JournalFiles.write([entry], to: dir.appending("x.journal"))
            let oracle = try await JournalFiles.journalctl(directory: dir.path)
            #expect(oracle.first?["BLOB"] as? [Int] == bytes.map(Int.init))  // journalctl: an array of byte values

            let reader = try reader(dir)
            _ = try reader.start(storedCursor: nil, startAt: .beginning)
            let batch = try reader.read(maxEntries: 10, maxBytes: 1 << 20)
            #expect(batch.binaryValues == 1)
            let journald = try parse(batch.events[0])["journald"] as! [String: Any]
            #expect(journald["BLOB"] as? [String: String] == ["base64": Base64.encode(bytes)])
            #expect(journald["MULTILINE"] as? String == "one\ntwo")  // a newline is text
        }
    }

    @Test func aRepeatedFieldIsAnArrayAsInJournalctl() async throws {
        try await withJournalDirectory { dir in
            try await JournalFiles.write([TestEntry.message("m", at: 0, [("TAG", "a"), ("TAG", "b")])], to: dir.appending("x.journal"))
            let oracle = try await JournalFiles.journalctl(directory: dir.path)
            let reader = try reader(dir)
            _ = try reader.start(storedCursor: nil, startAt: .beginning)
            let events = try readAll(reader).events
            let tags = (events[0]["journald"] as! [String: Any])["TAG"] as? [String]
            #expect(tags.map(Set.init) == (oracle[0]["TAG"] as? [String]).map(Set.init))
            #expect(tags?.count == 2)
        }
    }

    @Test func filtersSelectUnitsOrIdentifiersNarrowedByMatches() async throws {
        try await withJournalDirectory { dir in
            let entries = [
                TestEntry.message("ssh-info", at: 0, [("_SYSTEMD_UNIT", "ssh.service"), ("SYSLOG_IDENTIFIER", "sshd"), ("PRIORITY", "6")]),
                TestEntry.message("ssh-err", at: 1, [("_SYSTEMD_UNIT", "ssh.service"), ("SYSLOG_IDENTIFIER", "sshd"), ("PRIORITY", "3")]),
                TestEntry.message("kernel-err", at: 2, [("SYSLOG_IDENTIFIER", "kernel"), ("PRIORITY", "3")]),
                TestEntry.message("cron-err", at: 3, [("_SYSTEMD_UNIT", "cron.service"), ("SYSLOG_IDENTIFIER", "CRON"), ("PRIORITY", "3")]),
                TestEntry.message("app-warn", at: 4, [("_SYSTEMD_UNIT", "app.service"), ("SYSLOG_IDENTIFIER", "app"), ("PRIORITY", "4")]),
            ]
            try await JournalFiles.write(entries, to: dir.appending("x.journal"))
            func read(units: [String] = [], identifiers: [String] = [], matches: [String] = []) throws -> [String] {
                let reader = try reader(dir, units: units, identifiers: identifiers, matches: matches)
                _ = try reader.start(storedCursor: nil, startAt: .beginning)
                return messages(try readAll(reader).events)
            }
            #expect(try read() == ["ssh-info", "ssh-err", "kernel-err", "cron-err", "app-warn"])
            #expect(try read(units: ["ssh"]) == ["ssh-info", "ssh-err"])
            #expect(try read(units: ["ssh", "app.service"]) == ["ssh-info", "ssh-err", "app-warn"])
            #expect(try read(identifiers: ["kernel"]) == ["kernel-err"])
            #expect(try read(units: ["ssh"], identifiers: ["kernel"]) == ["ssh-info", "ssh-err", "kernel-err"])
            #expect(try read(units: ["ssh"], identifiers: ["kernel"], matches: ["PRIORITY=3"]) == ["ssh-err", "kernel-err"])
            #expect(try read(matches: ["PRIORITY=3", "PRIORITY=4"]) == ["ssh-err", "kernel-err", "cron-err", "app-warn"])
            #expect(try read(matches: ["PRIORITY=3", "SYSLOG_IDENTIFIER=CRON"]) == ["cron-err"])
            #expect(try read(units: ["nothing"]) == [])
        }
    }

    @Test func startAtEndReadsOnlyWhatIsWrittenAfterwardsAndGivesTheLastCursor() async throws {
        try await withJournalDirectory { dir in
            let path = dir.appending("x.journal")
            try await JournalFiles.write((0..<5).map { TestEntry.message("old \($0)", at: $0) }, to: path)
            let oracle = try await JournalFiles.journalctl(directory: dir.path)
            let reader = try reader(dir)
            #expect(try reader.start(storedCursor: nil, startAt: .end) == .end(cursor: oracle.last?["__CURSOR"] as? String))
            #expect(try readAll(reader).events.isEmpty)
            try await JournalFiles.write((5..<8).map { TestEntry.message("new \($0)", at: $0) }, to: path)
            #expect(try reader.wait() == .changed)
            #expect(messages(try readAll(reader).events) == ["new 5", "new 6", "new 7"])
        }
    }

    @Test func startAtEndOfAnEmptyJournalReadsEverythingThatComes() async throws {
        try await withJournalDirectory { dir in
            let reader = try reader(dir)
            #expect(try reader.start(storedCursor: nil, startAt: .end) == .end(cursor: nil))
            try await JournalFiles.write([TestEntry.message("first", at: 0)], to: dir.appending("x.journal"))
            #expect(try reader.wait() != .stopped)
            #expect(try await eventually(timeout: .seconds(20)) { !(try reader.read(maxEntries: 10, maxBytes: 1 << 20).events.isEmpty) } == true)
        }
    }

    @Test func aStoredCursorResumesAfterItsEntryEvenWhenFiltersChanged() async throws {
        try await withJournalDirectory { dir in
            let entries = (0..<10).map { TestEntry.message("m\($0)", at: $0, [("PRIORITY", $0 == 4 ? "6" : "3")]) }
            try await JournalFiles.write(entries, to: dir.appending("x.journal"))
            let oracle = try await JournalFiles.journalctl(directory: dir.path)
            let cursor = oracle[4]["__CURSOR"] as! String  // m4, which the filter below does not pass
            let plain = try reader(dir)
            #expect(try plain.start(storedCursor: cursor, startAt: .end) == .resumed)
            #expect(messages(try readAll(plain).events) == ["m5", "m6", "m7", "m8", "m9"])
            let filtered = try reader(dir, matches: ["PRIORITY=3"])
            #expect(try filtered.start(storedCursor: cursor, startAt: .beginning) == .resumed)
            #expect(messages(try readAll(filtered).events) == ["m5", "m6", "m7", "m8", "m9"])
        }
    }

    @Test func aCursorTheJournalNoLongerHasIsAGapFromTheOldestEntry() async throws {
        try await withJournalDirectory { old in
            try await JournalFiles.write((0..<5).map { TestEntry.message("old \($0)", at: $0) }, to: old.appending("x.journal"))
            let lost = try await JournalFiles.journalctl(directory: old.path)[2]["__CURSOR"] as! String
            try await withJournalDirectory { dir in
                // A new journal file set: later entries (as after a vacuum) in files that lack the cursor.
                try await JournalFiles.write((10..<14).map { TestEntry.message("new \($0)", at: $0) }, to: dir.appending("y.journal"))
                let reader = try reader(dir)
                #expect(try reader.start(storedCursor: lost, startAt: .end) == .gap(storedCursor: lost))
                #expect(messages(try readAll(reader).events) == ["new 10", "new 11", "new 12", "new 13"])
            }
            // Entries of the same file set that all come before the cursor's place: still a gap, still all read.
            try await withJournalDirectory { dir in
                try await JournalFiles.write([TestEntry.message("earlier", at: 0, bootID: "fedcba9876543210fedcba9876543210")], to: dir.appending("z.journal"))
                let reader = try reader(dir)
                #expect(try reader.start(storedCursor: lost, startAt: .end) == .gap(storedCursor: lost))
                #expect(messages(try readAll(reader).events) == ["earlier"])
            }
        }
    }

    @Test func anUnparsableCursorIsAGapToo() async throws {
        try await withJournalDirectory { dir in
            try await JournalFiles.write([TestEntry.message("a", at: 0)], to: dir.appending("x.journal"))
            let reader = try reader(dir)
            #expect(try reader.start(storedCursor: "not a cursor", startAt: .end) == .gap(storedCursor: "not a cursor"))
            #expect(messages(try readAll(reader).events) == ["a"])
        }
    }

    @Test func entriesFromAnotherBootFollowInOrder() async throws {
        try await withJournalDirectory { dir in
            let path = dir.appending("x.journal")
            try await JournalFiles.write((0..<3).map { TestEntry.message("boot1 \($0)", at: $0) }, to: path)
            let cursor = try await JournalFiles.journalctl(directory: dir.path).last!["__CURSOR"] as! String
            let boot2 = "00112233445566778899aabbccddeeff"
            try await JournalFiles.write((3..<5).map { TestEntry.message("boot2 \($0)", at: $0, bootID: boot2) }, to: path)
            let reader = try reader(dir)
            #expect(try reader.start(storedCursor: cursor, startAt: .end) == .resumed)
            let events = try readAll(reader).events
            #expect(messages(events) == ["boot2 3", "boot2 4"])
            #expect((events[0]["journald"] as? [String: Any])?["_BOOT_ID"] as? String == boot2)
        }
    }

    @Test func stopEndsAWaitPromptlyFromAnotherThread() async throws {
        try await withJournalDirectory { dir in
            try await JournalFiles.write([TestEntry.message("a", at: 0)], to: dir.appending("x.journal"))
            let reader = try reader(dir)
            _ = try reader.start(storedCursor: nil, startAt: .end)
            let start = ContinuousClock.now
            async let woke = onThread { try reader.wait() }
            try await Task.sleep(for: .milliseconds(50))  // let the wait begin; the result is the same if it has not
            reader.stop()
            #expect(try await woke == .stopped)
            // Without stop the wait has no end (a quiet journal, no timeout): any bound shows it was stop that
            // ended it; a wide one, because the whole test run shares two cores.
            #expect(ContinuousClock.now - start < .seconds(30))
            #expect(try reader.wait() == .stopped)  // and every later wait
        }
    }

    @Test func aMissingDirectoryIsRefusedWithWhatToDo() {
        do {
            _ = try JournalReader(configuration: JournaldInputConfiguration(source: .directory("/nonexistent/ferry-journal")))
            Issue.record("opened")
        } catch {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains("does not exist"))
        }
    }
}
