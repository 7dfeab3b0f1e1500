import FerryTestSupport
import FerryWire
import NIOCore
import Testing

@Suite struct QueueRecordTests {
    let generator = EventGenerator(prefix: "rec")

    func encodedRecord(events: Int = 10) -> (QueueRecord, [UInt8]) {
        let batch = generator.batch(0, count: events)
        let record = batch.records[0]
        return (record, Array(record.encoded().readableBytesView))
    }

    @Test func roundTripsHeaderAndEvents() throws {
        let (record, bytes) = encodedRecord()
        #expect(bytes.count == record.storedSize)
        let decoded = try bytes.withUnsafeBytes { try QueueRecord(validating: $0) }
        #expect(decoded == record)
        let lines = try decoded.events().map { String(buffer: $0) }
        #expect(lines == generator.lines(batch: 0, count: 10))
    }

    @Test func detectsAFlippedBitAnywhere() {
        // Every byte of header and payload, one at a time: each flip must be reported, never trap.
        let (_, bytes) = encodedRecord(events: 3)
        for position in 0..<bytes.count {
            var damaged = bytes
            damaged[position] ^= 0x10
            #expect(throws: WireError.self, "flip at byte \(position) went unnoticed") {
                try damaged.withUnsafeBytes { _ = try QueueRecord(validating: $0) }
            }
        }
    }

    @Test func reportsWhatIsWrong() {
        let (_, bytes) = encodedRecord()
        func code(_ bytes: [UInt8]) -> WireError.Code? {
            do {
                _ = try bytes.withUnsafeBytes { try QueueRecord(validating: $0) }
                return nil
            } catch { return (error as? WireError)?.code }
        }
        #expect(code(Array(bytes.prefix(10))) == .recordTruncated)
        #expect(code(Array(bytes.dropLast(3))) == .recordLengthMismatch)
        var version = bytes
        version[0] = 9
        #expect(code(version) == .recordUnknownVersion)
        var codec = bytes
        codec[1] = 7
        #expect(code(codec) == .recordUnknownCodec)
        var payload = bytes
        payload[bytes.count - 5] ^= 0xFF
        #expect(code(payload) == .recordChecksumMismatch)
    }

    @Test func builderSplitsAtTheRecordSize() throws {
        let lines = generator.lines(batch: 1, count: 100)
        let batch = EventBatch(lines: lines.map { Array($0.utf8) }, maxRecordBytes: 2000)
        #expect(batch.records.count > 5)
        #expect(batch.eventCount == 100)
        for record in batch.records { #expect(Int(record.uncompressedLength) <= 2000) }
        let decoded = try batch.records.flatMap { try $0.events().map { String(buffer: $0) } }
        #expect(decoded == lines)
    }

    @Test func anEventLargerThanARecordGetsARecordOfItsOwn() throws {
        let big = "{\"blob\":\"" + String(repeating: "z", count: 5000) + "\"}"
        let batch = EventBatch(lines: [Array("{\"a\":1}".utf8), Array(big.utf8), Array("{\"b\":2}".utf8)], maxRecordBytes: 1000)
        #expect(batch.records.map(\.eventCount) == [1, 1, 1])
        #expect(try String(buffer: batch.records[1].events()[0]) == big)
    }

    /// `takeLines` gives the events not compressed yet, exactly as added; `append(lines:events:)` packs the
    /// lines of several such takes into one record, and starts a new one where a record would pass its size.
    @Test func linesTakenFromBuildersArePackedIntoOneRecord() throws {
        let lines = generator.lines(batch: 2, count: 9)
        var takes: [(lines: ByteBuffer, events: UInt32)] = []
        for group in [lines[0..<1], lines[1..<4], lines[4..<9]] {
            var builder = RecordBuilder()
            for line in group { builder.append(line: Array(line.utf8)) }
            let take = builder.takeLines()
            let taken = try #require(take)
            #expect(String(buffer: taken.lines) == group.map { $0 + "\n" }.joined())
            #expect(taken.events == UInt32(group.count))
            // Taken: the builder is empty.
            #expect(builder.eventCount == 0)
            let again = builder.takeLines()
            #expect(again == nil)
            takes.append(taken)
        }
        var packed = RecordBuilder()
        for take in takes { packed.append(lines: take.lines, events: take.events) }
        let batch = packed.finish()
        #expect(batch.records.count == 1)
        #expect(batch.eventCount == 9)
        #expect(try batch.records[0].events().map { String(buffer: $0) } == lines)

        // With records of at most the first two takes' bytes, the third starts a record of its own.
        var small = RecordBuilder(maxRecordBytes: takes[0].lines.readableBytes + takes[1].lines.readableBytes)
        for take in takes { small.append(lines: take.lines, events: take.events) }
        #expect(small.finish().records.map(\.eventCount) == [4, 5])
    }

    /// Once a record is sealed (more than a record's worth was added), nothing is taken: the caller
    /// finishes the batch instead.
    @Test func nothingIsTakenFromABuilderThatSealedARecord() throws {
        let lines = generator.lines(batch: 3, count: 50)
        var builder = RecordBuilder(maxRecordBytes: 1000)
        for line in lines { builder.append(line: Array(line.utf8)) }
        let taken = builder.takeLines()
        #expect(taken == nil)
        let batch = builder.finish()
        #expect(batch.eventCount == 50)
        #expect(try batch.records.flatMap { try $0.events().map { String(buffer: $0) } } == lines)
    }

    @Test func batchIDRoundTripsAndRefusesMalformedValues() throws {
        let id = BatchID(agentID: "3f9a0c1d2b4e5f60", firstSequence: 17, lastSequence: 42)
        #expect(id.description == "3f9a0c1d2b4e5f60/17-42")
        #expect(try BatchID.parse(id.description) == id)
        for bad in ["", "agent", "agent/1", "agent/5-2", "/1-2", "ag ent/1-2", "agent/x-2", "agent/1-2-3"] {
            #expect(BatchID(bad) == nil, "accepted \(bad)")
        }
    }
}
