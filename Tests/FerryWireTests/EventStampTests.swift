import FerryWire
import NIOCore
import Testing

@Suite struct EventStampTests {
    /// 2026-12-02T11:46:05.123Z
    let readAt: Int64 = 1_796_211_965_123

    /// The event `object` as a stamp writes it into a record.
    func stamped(_ object: String, _ stamp: EventStamp) throws -> String {
        var builder = RecordBuilder()
        let members = stamp.members(readAt: readAt)
        try Array(object.utf8).withUnsafeBytes { bytes in
            let present = try JSONValidator.validateObject(bytes, finding: stamp.keys)
            builder.append(object: bytes, adding: members, present: present)
        }
        let lines = try builder.finish().records[0].events().map { String(buffer: $0) }
        #expect(lines.count == 1)
        let line = lines[0]
        try Array(line.utf8).withUnsafeBytes { try JSONValidator.validateObject($0) }
        return line
    }

    @Test func addsTheReadTimeWhenTheEventHasNone() throws {
        let stamp = EventStamp()
        #expect(try stamped(#"{"message":"a"}"#, stamp) == #"{"@timestamp":"2026-12-02T11:46:05.123Z","message":"a"}"#)
        #expect(try stamped(#"{}"#, stamp) == #"{"@timestamp":"2026-12-02T11:46:05.123Z"}"#)
        #expect(try stamped(#"{ }"#, stamp) == #"{"@timestamp":"2026-12-02T11:46:05.123Z" }"#)
    }

    @Test func keepsATimestampTheEventHasAndEveryOtherByte() throws {
        let stamp = EventStamp()
        let event = #"{"n" : 1.50e3, "@timestamp":"2020-01-01T00:00:00Z","nested":{"@timestamp":"x"}}"#
        #expect(try stamped(event, stamp) == event)
        // A nested @timestamp is not the event's: the top level gets one.
        #expect(try stamped(#"{"nested":{"@timestamp":"x"}}"#, stamp) == #"{"@timestamp":"2026-12-02T11:46:05.123Z","nested":{"@timestamp":"x"}}"#)
        // Key order, spacing and number formats are kept after the added keys.
        #expect(try stamped(#"{"b":1.0,  "a":"\u00e9"}"#, stamp) == #"{"@timestamp":"2026-12-02T11:46:05.123Z","b":1.0,  "a":"\u00e9"}"#)
    }

    @Test func addsHostAndFieldsUnlessTheEventHasThem() throws {
        let stamp = EventStamp(host: "edge-7", fields: [.init(key: "env", value: "prod"), .init(key: "site", value: "a \"quoted\" site")])
        #expect(try stamped(#"{"message":"m"}"#, stamp)
            == #"{"@timestamp":"2026-12-02T11:46:05.123Z","host":"edge-7","env":"prod","site":"a \"quoted\" site","message":"m"}"#)
        #expect(try stamped(#"{"host":"client","env":"dev","@timestamp":"t"}"#, stamp)
            == #"{"site":"a \"quoted\" site","host":"client","env":"dev","@timestamp":"t"}"#)
    }

    @Test func storesEventsExactlyAsReceivedWhenTimestampsAreOff() throws {
        let stamp = EventStamp(addTimestamp: false)
        #expect(stamp.isEmpty)
        #expect(try stamped(#"{"message":"a"}"#, stamp) == #"{"message":"a"}"#)
        let withFields = EventStamp(addTimestamp: false, fields: [.init(key: "env", value: "prod")])
        #expect(try stamped(#"{"message":"a"}"#, withFields) == #"{"env":"prod","message":"a"}"#)
    }

    @Test func theScannerFindsTheSameKeysAsTheValidator() throws {
        let keys = TopLevelKeys(["@timestamp", "host", "env"])
        for object in [#"{"host":1,"x":{"env":2},"@timestamp":[{"y":"}"}]}"#, #"{}"#, #"{"a":"\"host\""}"#, #"{"env" : null , "host":"h"}"#] {
            let fromValidator = try Array(object.utf8).withUnsafeBytes { try JSONValidator.validateObject($0, finding: keys) }
            let fromScanner = Array(object.utf8).withUnsafeBytes { TopLevelField.presence(of: keys, in: $0) }
            #expect(fromValidator == fromScanner, "\(object)")
        }
        let mixed = try Array(#"{"host":1,"x":{"env":2}}"#.utf8).withUnsafeBytes { try JSONValidator.validateObject($0, finding: keys) }
        #expect(mixed == keys.mask(of: "host"))
    }

    @Test func aStampedEventLongerThanARecordStillGoesWhole() throws {
        var builder = RecordBuilder(maxRecordBytes: 64)
        let members = EventStamp().members(readAt: readAt)
        for i in 0..<5 {
            Array(#"{"i":\#(i),"pad":"0123456789012345678901234567890123456789"}"#.utf8).withUnsafeBytes {
                builder.append(object: $0, adding: members, present: 0)
            }
        }
        let batch = builder.finish()
        #expect(batch.eventCount == 5)
        let lines = try batch.records.flatMap { try $0.events().map { String(buffer: $0) } }
        #expect(lines.map { $0.hasPrefix(#"{"@timestamp":"2026-12-02T11:46:05.123Z","i":"#) } == Array(repeating: true, count: 5))
    }
}
