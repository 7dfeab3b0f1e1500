@testable import FerryIngest
import FerryWire
import NIOCore
import Testing

/// An aggregator stores gzip members as they arrived when nothing has to be added to their events
/// (issue 20): no second deflate, and the stamping of the input seam still holds for the others.
@Suite struct PassThroughTests {
    static let readAt: Int64 = 1_700_000_000_000
    static let stamp = EventStamp(addTimestamp: true)

    func member(_ lines: [String]) -> [UInt8] {
        var out = ByteBuffer()
        Array(lines.map { $0 + "\n" }.joined().utf8).withUnsafeBytes { Gzip.compress($0, into: &out) }
        return Array(out.readableBytesView)
    }

    func decode(_ body: [UInt8], stamp: EventStamp = stamp, chunk: Int = 5) throws -> (batch: EventBatch, asSent: Int) {
        var decoder = try RequestDecoder(format: .ndjson, gzip: true, limits: IngestConfiguration.Limits(), stamp: stamp, readAt: Self.readAt)
        for start in stride(from: 0, to: body.count, by: chunk) {
            try decoder.consume(ByteBuffer(bytes: body[start..<min(start + chunk, body.count)]))
        }
        let batch = try decoder.finish()
        return (batch, decoder.membersStoredAsSent)
    }

    func events(_ batch: EventBatch) throws -> [String] {
        try batch.records.flatMap { try $0.events().map { String(buffer: $0) } }
    }

    let stamped = (0..<3).map { #"{"@timestamp":"2026-01-01T00:00:0\#($0).000Z","n":\#($0)}"# }

    @Test(arguments: [1, 5, 4096])
    func membersWhoseEventsNeedNothingAreStoredAsTheyArrived(chunk: Int) throws {
        let members = [member(Array(stamped[0..<2])), member([stamped[2]]), member(stamped)]
        let (batch, asSent) = try decode(members.flatMap { $0 }, chunk: chunk)
        #expect(asSent == 3)
        #expect(batch.records.map { Array($0.payload.readableBytesView) } == members)
        #expect(batch.records.map(\.eventCount) == [2, 1, 3])
        #expect(try events(batch) == Array(stamped[0..<2]) + [stamped[2]] + stamped)
        // The records are whole: header lengths and CRCs as any other record's.
        for record in batch.records {
            let stored = try record.encoded().withUnsafeReadableBytes { try QueueRecord(validating: $0) }
            #expect(try stored.decompressedPayload().readableBytes == Int(record.uncompressedLength))
        }
    }

    @Test func aMemberWithAnEventToStampIsStampedAndTheOthersPassThrough() throws {
        let bare = #"{"n":9}"#
        let members = [member(stamped), member([stamped[0], bare, stamped[1]]), member([stamped[2]])]
        let (batch, asSent) = try decode(members.flatMap { $0 })
        #expect(asSent == 2)
        #expect(Array(batch.records[0].payload.readableBytesView) == members[0])
        #expect(Array(batch.records.last!.payload.readableBytesView) == members[2])
        #expect(try events(batch) == stamped + [stamped[0], #"{"@timestamp":"2023-11-14T22:13:20.000Z","n":9}"#, stamped[1], stamped[2]])
    }

    @Test func membersThatCannotBeRecordsAreRebuilt() throws {
        // A line cut across two members, a blank line, a CRLF, and a stamp that adds a field.
        let whole = Array(stamped.map { $0 + "\n" }.joined().utf8)
        var cut = ByteBuffer(), rest = ByteBuffer()
        whole[..<10].withUnsafeBytes { Gzip.compress($0, into: &cut) }
        whole[10...].withUnsafeBytes { Gzip.compress($0, into: &rest) }
        let split = try decode(Array(cut.readableBytesView) + Array(rest.readableBytesView))
        #expect(split.asSent == 0)
        #expect(try events(split.batch) == stamped)

        let blank = try decode(member([stamped[0], "", stamped[1]]))
        #expect(blank.asSent == 0)
        #expect(try events(blank.batch) == [stamped[0], stamped[1]])

        let crlf = try decode(member([stamped[0] + "\r", stamped[1]]))
        #expect(crlf.asSent == 0)
        #expect(try events(crlf.batch) == [stamped[0], stamped[1]])

        let withField = try decode(member(stamped), stamp: EventStamp(addTimestamp: true, fields: [.init(key: "env", value: "prod")]))
        #expect(withField.asSent == 0)
        #expect(try events(withField.batch).allSatisfy { $0.hasPrefix(#"{"env":"prod","#) })
    }

    @Test func aMemberOverARecordsWorthIsRebuiltIntoRecords() throws {
        let line = #"{"@timestamp":"2026-01-01T00:00:00.000Z","pad":""# + String(repeating: "x", count: 1000) + #""}"#
        let lines = Array(repeating: line, count: 1500)  // about 1.5 MiB inflated
        let (batch, asSent) = try decode(member(lines), chunk: 65536)
        #expect(asSent == 0)
        #expect(batch.records.count == 2)
        #expect(batch.eventCount == 1500)
        #expect(batch.records.allSatisfy { $0.uncompressedLength <= UInt32(RecordBuilder.defaultMaxRecordBytes) })
    }

    @Test func withoutTimestampsAddedEveryMemberPassesThrough() throws {
        let (batch, asSent) = try decode(member([#"{"n":1}"#]) + member([#"{"n":2}"#]), stamp: .none)
        #expect(asSent == 2)
        #expect(try events(batch) == [#"{"n":1}"#, #"{"n":2}"#])
    }
}
