@testable import FerryJournald
import FerryWire
import Foundation
import Testing

/// Entry fields → one JSON event, without a journal: exact bytes, and every event valid JSON.
@Suite struct JournalEventEncoderTests {
    func encode(_ fields: [[UInt8]], realtime: UInt64? = 1_700_000_000_123_456, encoder: inout JournalEventEncoder) throws -> String {
        encoder.reset()
        for field in fields { field.withUnsafeBytes { encoder.add(field: $0) } }
        var out: [UInt8] = []
        encoder.finish(realtime: realtime, into: &out)
        try out.withUnsafeBytes { try JSONValidator.validateObject($0) }
        return String(decoding: out, as: UTF8.self)
    }

    func encode(_ fields: [String], realtime: UInt64? = 1_700_000_000_123_456) throws -> String {
        var encoder = JournalEventEncoder()
        return try encode(fields.map { Array($0.utf8) }, realtime: realtime, encoder: &encoder)
    }

    @Test func mapsTheWellKnownFieldsAndKeepsTheRestUnderJournald() throws {
        let event = try encode([
            "_HOSTNAME=edge-01", "MESSAGE=Accepted publickey for root", "_SYSTEMD_UNIT=ssh.service", "PRIORITY=6",
            "SYSLOG_IDENTIFIER=sshd", "_PID=812", "_BOOT_ID=0123456789abcdef0123456789abcdef", "SYSLOG_FACILITY=4",
        ])
        #expect(event == #"{"@timestamp":"2023-11-14T22:13:20.123456Z","message":"Accepted publickey for root","unit":"ssh.service","identifier":"sshd","pid":812,"severity":"info","journald":{"_HOSTNAME":"edge-01","_BOOT_ID":"0123456789abcdef0123456789abcdef","SYSLOG_FACILITY":"4"}}"#)
    }

    @Test func everyPriorityHasTheSyslogInputsSeverityName() throws {
        for (priority, name) in SyslogNames.severities.enumerated() {
            #expect(try encode(["PRIORITY=\(priority)"], realtime: nil) == #"{"severity":"\#(name)"}"#)
        }
    }

    @Test func aPriorityOutsideZeroToSevenOrAPidThatIsNoNumberStaysUnderJournald() throws {
        #expect(try encode(["PRIORITY=8", "_PID=12a"], realtime: nil) == #"{"journald":{"PRIORITY":"8","_PID":"12a"}}"#)
        #expect(try encode(["PRIORITY=", "_PID="], realtime: nil) == #"{"journald":{"PRIORITY":"","_PID":""}}"#)
        #expect(try encode(["_PID=12345678901"], realtime: nil) == #"{"journald":{"_PID":"12345678901"}}"#)
    }

    @Test func aRepeatedFieldIsAnArrayInTheEntrysOrder() throws {
        let event = try encode(["FOO=x", "MESSAGE=m", "FOO=y", "BAR=1", "FOO=z"], realtime: nil)
        #expect(event == #"{"message":"m","journald":{"FOO":["x","y","z"],"BAR":"1"}}"#)
    }

    @Test func aRepeatedMappedFieldKeepsItsFirstValueOnTopAndAllValuesUnderJournald() throws {
        let event = try encode(["MESSAGE=first", "MESSAGE=second", "_PID=1", "_PID=2"], realtime: nil)
        #expect(event == #"{"message":"first","pid":1,"journald":{"MESSAGE":["first","second"],"_PID":["1","2"]}}"#)
    }

    @Test func aBinaryValueIsBase64AndMarkedAndCounted() throws {
        var encoder = JournalEventEncoder()
        let core: [UInt8] = Array("COREDUMP=".utf8) + [0x7F, 0x45, 0x4C, 0x46, 0x00, 0xFF]
        let event = try encode([Array("MESSAGE=crashed".utf8), core], realtime: nil, encoder: &encoder)
        #expect(event == #"{"message":"crashed","journald":{"COREDUMP":{"base64":"f0VMRgD/"}}}"#)
        #expect(encoder.binaryValues == 1)
        _ = try encode([core, core], realtime: nil, encoder: &encoder)
        #expect(encoder.binaryValues == 3)  // cumulative across entries
    }

    @Test func aBinaryMessageIsTextOnTopAndExactUnderJournald() throws {
        var encoder = JournalEventEncoder()
        let event = try encode([Array("MESSAGE=bad ".utf8) + [0xC3, 0x28] + Array(" byte".utf8)], realtime: nil, encoder: &encoder)
        #expect(event == #"{"message":"bad \#u{FFFD}( byte","journald":{"MESSAGE":{"base64":"YmFkIMMoIGJ5dGU="}}}"#)
        #expect(encoder.binaryValues == 1)
    }

    @Test func aNulByteMakesAValueBinary() throws {
        var encoder = JournalEventEncoder()
        let event = try encode([Array("X=a".utf8) + [0] + Array("b".utf8)], realtime: nil, encoder: &encoder)
        #expect(event == #"{"journald":{"X":{"base64":"YQBi"}}}"#)
    }

    @Test func controlCharactersAndQuotesAreTextEscaped() throws {
        // An ANSI colour escape, a carriage return, a tab, a newline, quotes and a backslash: all text.
        let event = try encode(["MESSAGE=\u{1B}[31mred\u{1B}[0m\r\n\t\"q\" \\ é ✓"], realtime: nil)
        #expect(event == #"{"message":"\u001b[31mred\u001b[0m\r\n\t\"q\" \\ é ✓"}"#)
    }

    @Test func theTimestampIsTheEntrysRealtimeInMicroseconds() throws {
        #expect(try encode([], realtime: 0) == #"{"@timestamp":"1970-01-01T00:00:00.000000Z"}"#)
        #expect(try encode([], realtime: 1_700_000_000_000_001) == #"{"@timestamp":"2023-11-14T22:13:20.000001Z"}"#)
        #expect(try encode([], realtime: nil) == "{}")
    }

    @Test func aFieldWithoutEqualsSignIsSkippedAndCounted() throws {
        var encoder = JournalEventEncoder()
        let event = try encode([Array("GARBAGE".utf8), Array("=x".utf8), Array("A=1".utf8)], realtime: nil, encoder: &encoder)
        #expect(event == #"{"journald":{"A":"1"}}"#)
        #expect(encoder.malformedFields == 2)
    }

    @Test func anEmptyValueAndAValueWithEqualsSignsAreKept() throws {
        #expect(try encode(["EMPTY=", "EQ=a=b=c"], realtime: nil) == #"{"journald":{"EMPTY":"","EQ":"a=b=c"}}"#)
    }

    @Test func theEncoderIsReusedAcrossEntriesWithoutLeftovers() throws {
        var encoder = JournalEventEncoder()
        _ = try encode([Array("MESSAGE=one".utf8), Array("FOO=1".utf8), Array("FOO=2".utf8)], realtime: nil, encoder: &encoder)
        let second = try encode([Array("FOO=3".utf8)], realtime: nil, encoder: &encoder)
        #expect(second == #"{"journald":{"FOO":"3"}}"#)
    }

    @Test func randomEntriesAlwaysGiveValidJSON() throws {
        var generator = SystemRandomNumberGenerator()
        var encoder = JournalEventEncoder()
        for _ in 0..<2000 {
            let fields = (0..<Int.random(in: 0...12, using: &generator)).map { _ -> [UInt8] in
                let known = ["MESSAGE", "_PID", "PRIORITY", "FOO", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "BAR"].randomElement(using: &generator)!
                // Now and then a name from a damaged file: any bytes but `=`.
                let name = Int.random(in: 0..<10, using: &generator) > 0 ? Array(known.utf8)
                    : (0..<Int.random(in: 1...6, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }.map { $0 == 0x3D ? 0x41 : $0 }
                let value = (0..<Int.random(in: 0...24, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                return name + [UInt8(ascii: "=")] + value
            }
            let event = try encode(fields, realtime: UInt64.random(in: 0...2_000_000_000_000_000, using: &generator), encoder: &encoder)
            _ = try parse(Array(event.utf8))
        }
    }
}
