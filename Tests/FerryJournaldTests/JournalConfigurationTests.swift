@testable import FerryJournald
import Testing

/// Filters, positions, configuration checks and the access verdict: pure, exact.
@Suite struct JournalConfigurationTests {
    @Test func unitsAndIdentifiersAreORedAndMatchesANDedWithThem() throws {
        let steps = try JournalFilter.steps(units: ["ssh", "cron.service"], identifiers: ["kernel"], matches: ["_TRANSPORT=kernel", "PRIORITY=3"])
        #expect(steps == [
            .match("_SYSTEMD_UNIT=ssh.service"), .match("_SYSTEMD_UNIT=cron.service"), .disjunction,
            .match("SYSLOG_IDENTIFIER=kernel"), .conjunction, .match("_TRANSPORT=kernel"), .match("PRIORITY=3"),
        ])
    }

    @Test func eachFilterAloneNeedsNoCombinator() throws {
        #expect(try JournalFilter.steps(units: [], identifiers: [], matches: []) == [])
        #expect(try JournalFilter.steps(units: ["a"], identifiers: [], matches: []) == [.match("_SYSTEMD_UNIT=a.service")])
        #expect(try JournalFilter.steps(units: [], identifiers: ["x", "y"], matches: []) == [.match("SYSLOG_IDENTIFIER=x"), .match("SYSLOG_IDENTIFIER=y")])
        #expect(try JournalFilter.steps(units: [], identifiers: [], matches: ["A=1", "A=2"]) == [.match("A=1"), .match("A=2")])
        #expect(try JournalFilter.steps(units: [], identifiers: ["x"], matches: ["A=1"]) == [.match("SYSLOG_IDENTIFIER=x"), .conjunction, .match("A=1")])
    }

    @Test func unitNamesGetServiceUnlessTheyHaveAUnitType() throws {
        #expect(try JournalFilter.unitName("sshd") == "sshd.service")
        #expect(try JournalFilter.unitName("getty@tty1") == "getty@tty1.service")
        #expect(try JournalFilter.unitName("systemd-journald.socket") == "systemd-journald.socket")
        #expect(try JournalFilter.unitName("user-1000.slice") == "user-1000.slice")
        #expect(try JournalFilter.unitName("my.app") == "my.app.service")
    }

    @Test func badFiltersAreRefusedWithTheValueNamed() {
        func message(_ body: () throws -> Void) -> String? {
            do { try body() } catch let error as JournaldError {
                return error.code == .invalidConfiguration ? error.message : "wrong code \(error.code)"
            } catch { return "not a JournaldError: \(error)" }
            return nil
        }
        #expect(message { _ = try JournalFilter.steps(units: ["ssh*"], identifiers: [], matches: []) }?.contains("'ssh*' is a pattern") == true)
        #expect(message { _ = try JournalFilter.steps(units: [""], identifiers: [], matches: []) }?.contains("unit name is empty") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [""], matches: []) }?.contains("identifier is empty") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: ["nofield"]) }?.contains("'nofield' is not FIELD=value") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: ["=x"]) }?.contains("is not FIELD=value") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: ["lower=x"]) }?.contains("'lower' is not a journal field name") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: ["1A=x"]) }?.contains("not a journal field name") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: [String(repeating: "A", count: 65) + "=x"]) }?.contains("at most 64") == true)
        #expect(message { _ = try JournalFilter.steps(units: [], identifiers: [], matches: ["_PID=1", "MESSAGE=a=b"]) } == nil)
        #expect(message { try JournaldInputConfiguration(maxEntriesPerAppend: 0).validate() }?.contains("at least 1") == true)
        #expect(message { try JournaldInputConfiguration(source: .directory("")).validate() }?.contains("directory is empty") == true)
        #expect(message { try JournaldInputConfiguration(source: .files([])).validate() }?.contains("list of journal files is empty") == true)
    }

    @Test func thePositionIsTheCursorBehindAVersionByte() throws {
        let cursor = "s=86a2969f8b384a0a9a777a6ed1809b06;i=2;b=0123456789abcdef0123456789abcdef;m=3e9;t=60a24181e4001;x=8ac4e960511be3c8"
        let position = JournalPosition(input: "system", cursor: cursor)
        #expect(position.key == Array("journald/system".utf8))
        #expect(position.value == [1] + Array(cursor.utf8))
        #expect(try JournalPosition.cursor(from: position.value) == cursor)
        #expect(JournalPosition.key(input: "system") == position.key)
    }

    @Test func aPositionOfAnotherVersionOrEmptyIsRefused() {
        for value: [UInt8] in [[], [1], [2] + Array("s=1".utf8)] {
            #expect(throws: JournaldError.self) { try JournalPosition.cursor(from: value) }
        }
        do {
            _ = try JournalPosition.cursor(from: [2, 0x73])
        } catch {
            #expect(error.code == .unreadablePosition)
            #expect(error.message.contains("format version 2, this Ferry reads version 1"))
        }
    }

    typealias Survey = JournalAccess.Survey
    let eacces = Int32(13), eperm = Int32(1), eio = Int32(5)

    @Test func noReadableFileWhereUnreadableOnesExistRefusesWithTheGroupToAdd() {
        let survey = Survey(missing: ["/run/log/journal"], unreadable: [.init(path: "/var/log/journal/m/system.journal", error: eacces)], readable: 0)
        guard case .refuse(let error) = JournalAccess.verdict(.system, survey, uid: 998) else {
            Issue.record("not refused")
            return
        }
        #expect(error.code == .permissionDenied)
        #expect(error.message == "cannot read the system journal: 1 of its journal files or directories (e.g. /var/log/journal/m/system.journal) may not be read by uid 998; add Ferry's user to the systemd-journal group (or run it as root) and restart it")
        let directory = Survey(unreadable: [.init(path: "/j", error: eperm)], readable: 0)
        guard case .refuse(let error) = JournalAccess.verdict(.directory("/j"), directory, uid: 1) else {
            Issue.record("not refused")
            return
        }
        #expect(error.code == .permissionDenied)
    }

    @Test func someUnreadableFilesBesideReadableOnesOnlyWarn() {
        let survey = Survey(unreadable: [.init(path: "/var/log/journal/m/user-1001.journal", error: eacces)], readable: 3)
        #expect(JournalAccess.verdict(.system, survey, uid: 998) == .openWithWarning(
            "1 journal files (e.g. /var/log/journal/m/user-1001.journal) may not be read by uid 998 and are skipped; add Ferry's user to the systemd-journal group to read them"))
        let io = Survey(unreadable: [.init(path: "/j/x.journal", error: eio)], readable: 1)
        guard case .openWithWarning = JournalAccess.verdict(.directory("/j"), io, uid: 0) else {
            Issue.record("no warning")
            return
        }
    }

    @Test func aMissingJournalIsRefusedAndAnEmptyDirectoryIsWaitedFor() {
        let none = Survey(missing: JournalAccess.systemRoots)
        guard case .refuse(let error) = JournalAccess.verdict(.system, none, uid: 0) else {
            Issue.record("not refused")
            return
        }
        #expect(error.code == .cannotOpen)
        #expect(error.message.contains("is systemd-journald running"))
        guard case .refuse(let missing) = JournalAccess.verdict(.directory("/nope"), Survey(missing: ["/nope"]), uid: 0) else {
            Issue.record("not refused")
            return
        }
        #expect(missing.message == "journal directory /nope does not exist; name journald's directory (e.g. /var/log/journal) or create it")
        guard case .refuse(let file) = JournalAccess.verdict(.files(["/a.journal"]), Survey(missing: ["/a.journal"]), uid: 0) else {
            Issue.record("not refused")
            return
        }
        #expect(file.code == .cannotOpen)
        #expect(JournalAccess.verdict(.directory("/j"), Survey(), uid: 0) == .openWithWarning("the journal in /j has no journal files yet; waiting for them"))
        #expect(JournalAccess.verdict(.directory("/j"), Survey(readable: 2), uid: 0) == .open)
        #expect(JournalAccess.verdict(.system, Survey(missing: ["/run/log/journal"], readable: 1), uid: 0) == .open)
    }
}
