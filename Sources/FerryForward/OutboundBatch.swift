package import FerryQueue
package import FerryWire
package import NIOCore

/// One request's worth of leased records: their gzip members concatenated (a valid gzip stream, RFC 1952;
/// no recompression) and the `Ferry-Batch` id that lets a receiving Ferry drop an exact retry.
package struct OutboundBatch: Sendable {
    package let sequences: [UInt64]
    package let body: ByteBuffer
    package let events: Int
    package let batchID: BatchID

    package init(records: [StoredRecord], agentID: String) {
        precondition(!records.isEmpty)
        var body = ByteBuffer()
        body.reserveCapacity(records.reduce(0) { $0 + $1.record.payload.readableBytes })
        for stored in records { body.writeImmutableBuffer(stored.record.payload) }
        self.body = body
        self.sequences = records.map(\.sequence)
        self.events = records.reduce(0) { $0 + Int($1.record.eventCount) }
        self.batchID = BatchID(agentID: agentID, firstSequence: records.first!.sequence, lastSequence: records.last!.sequence)
    }
}
