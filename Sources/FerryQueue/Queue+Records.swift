public import FerryWire

/// A record read from the queue, checked and copied out of LMDB.
public struct StoredRecord: Sendable, Hashable {
    public let sequence: UInt64
    public let record: QueueRecord
}

/// A record that failed its check: its sequence number and why. Never skipped silently.
public struct CorruptRecord: Sendable, Hashable {
    public let sequence: UInt64
    public let error: WireError
}

/// Records handed to a consumer (the balancer), oldest first. In memory only: not acknowledged records
/// are leased again after a restart.
public struct Lease: Sendable, Hashable {
    /// Records that passed their check.
    public let records: [StoredRecord]
    /// Records that failed it; the caller moves them to `dead` or acknowledges them.
    public let corrupt: [CorruptRecord]

    public var isEmpty: Bool { records.isEmpty && corrupt.isEmpty }
    /// Sequence numbers of every record of the lease, good or not, ascending.
    public var sequences: [UInt64] { (records.map(\.sequence) + corrupt.map(\.sequence)).sorted() }
    /// Events in the good records.
    public var eventCount: Int { records.reduce(0) { $0 + Int($1.record.eventCount) } }
}

/// Records read without leasing them (`Queue.peek`).
public struct RecordPage: Sendable, Hashable {
    public var records: [StoredRecord]
    public var corrupt: [CorruptRecord]
    /// Where the next page starts.
    public var nextSequence: UInt64

    var count: Int { records.count + corrupt.count }

    mutating func add(sequence: UInt64, value: UnsafeRawBufferPointer) {
        do {
            records.append(StoredRecord(sequence: sequence, record: try QueueRecord(validating: value)))
        } catch {
            corrupt.append(CorruptRecord(sequence: sequence, error: error))
        }
    }
}

/// A record in `dead`: why it is there, since when, and the record itself (or why it cannot be read).
public struct DeadRecord: Sendable, Hashable {
    public let sequence: UInt64
    /// Why it was moved there (HTTP status and body excerpt, or the check that failed).
    public let reason: String
    /// When it was moved there, in ms since the Unix epoch.
    public let movedAt: Int64
    public let record: Result<QueueRecord, WireError>
    /// The outputs that buried it.
    public let outputs: [String]

    static let maxReasonBytes = 1024

    /// Value layout: reason length (UInt16, big-endian), reason (UTF-8), moved-at (Int64 ms, big-endian),
    /// then the record exactly as it was stored in `records`.
    static func encode(reason: [UInt8], buriedAt: Int64, record: [UInt8]) -> [UInt8] {
        var value: [UInt8] = []
        value.reserveCapacity(2 + reason.count + 8 + record.count)
        withUnsafeBytes(of: UInt16(reason.count).bigEndian) { value += $0 }
        value += reason
        withUnsafeBytes(of: UInt64(bitPattern: buriedAt).bigEndian) { value += $0 }
        value += record
        return value
    }

    /// A consumer's mark on a record it buried (`dead_marks`, key consumer id · sequence): reason length
    /// (UInt16, big-endian), reason (UTF-8), buried-at (Int64 ms, big-endian). The record itself is stored
    /// once, in `records` while another consumer still needs it, then in `dead`.
    static func encodeMark(reason: [UInt8], buriedAt: Int64) -> [UInt8] {
        var value: [UInt8] = []
        value.reserveCapacity(2 + reason.count + 8)
        withUnsafeBytes(of: UInt16(reason.count).bigEndian) { value += $0 }
        value += reason
        withUnsafeBytes(of: UInt64(bitPattern: buriedAt).bigEndian) { value += $0 }
        return value
    }

    /// The reason and time of a mark, nil when it is damaged.
    static func decodeMark(_ value: [UInt8]) -> (reason: [UInt8], buriedAt: Int64)? {
        guard value.count >= 2 else { return nil }
        let length = Int(UInt16(value[0]) << 8 | UInt16(value[1]))
        guard value.count == 2 + length + 8 else { return nil }
        let time = value[(2 + length)...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (Array(value[2..<(2 + length)]), Int64(bitPattern: time))
    }

    /// The stored record inside a dead value.
    static func recordBytes(of value: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        guard value.count >= 2 else { throw damaged }
        let reasonLength = Int(UInt16(bigEndian: value.loadUnaligned(as: UInt16.self)))
        guard value.count >= 2 + reasonLength + 8 else { throw damaged }
        return UnsafeRawBufferPointer(rebasing: value[(2 + reasonLength + 8)...])
    }

    private static let damaged = QueueError(.corruptRecord, "a dead record's envelope is damaged; purge it with `ferry-tools dlq purge`")

    init(sequence: UInt64, reason: String, movedAt: Int64, record: Result<QueueRecord, WireError>, outputs: [String]) {
        self.sequence = sequence
        self.reason = reason
        self.movedAt = movedAt
        self.record = record
        self.outputs = outputs
    }

    init(sequence: UInt64, value: UnsafeRawBufferPointer, outputs: [String] = []) {
        self.sequence = sequence
        self.outputs = outputs
        guard value.count >= 2 else {
            (reason, movedAt, record) = ("", 0, .failure(WireError(.recordTruncated, "dead record envelope is damaged")))
            return
        }
        let reasonLength = Int(UInt16(bigEndian: value.loadUnaligned(as: UInt16.self)))
        guard value.count >= 2 + reasonLength + 8 else {
            (reason, movedAt, record) = ("", 0, .failure(WireError(.recordTruncated, "dead record envelope is damaged")))
            return
        }
        reason = String(decoding: value[2..<(2 + reasonLength)], as: UTF8.self)
        movedAt = Int64(bitPattern: UInt64(bigEndian: value.loadUnaligned(fromByteOffset: 2 + reasonLength, as: UInt64.self)))
        let bytes = UnsafeRawBufferPointer(rebasing: value[(2 + reasonLength + 8)...])
        do {
            record = .success(try QueueRecord(validating: bytes))
        } catch {
            record = .failure(error)
        }
    }
}

/// An input's read position, kept in the queue's `positions` table and written in the transaction of the
/// events read up to it (`Queue.append(_:batchID:positions:)`). The key names the input and its source
/// (e.g. `file/<input>/<device>/<inode>`); the value is the input's own encoding. A nil value deletes it.
public struct InputPosition: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]?

    public init(key: [UInt8], value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    public init(key: String, value: [UInt8]?) {
        self.init(key: Array(key.utf8), value: value)
    }
}
