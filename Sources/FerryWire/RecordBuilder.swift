public import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The records of one append: every record is stored in one transaction, or none is.
public struct EventBatch: Sendable, Hashable {
    public var records: [QueueRecord]

    public init(records: [QueueRecord]) {
        self.records = records
    }

    /// Events in all records.
    public var eventCount: Int { records.reduce(0) { $0 + Int($1.eventCount) } }
    /// Bytes all records take when stored.
    public var storedBytes: Int { records.reduce(0) { $0 + $1.storedSize } }

    /// Builds a batch from NDJSON lines (each one JSON object, without its newline). For callers that
    /// already hold validated lines; the ingest streams through `RecordBuilder` instead.
    public init(lines: some Sequence<some Collection<UInt8>>, maxRecordBytes: Int = RecordBuilder.defaultMaxRecordBytes) {
        var builder = RecordBuilder(maxRecordBytes: maxRecordBytes)
        for line in lines { builder.append(line: line) }
        self = builder.finish()
    }
}

/// Packs NDJSON lines into records of at most `maxRecordBytes` uncompressed bytes, each one gzip member.
///
/// Compression happens here, on the caller's task, so that the queue's writer thread only copies bytes.
/// A single line longer than `maxRecordBytes` becomes a record of its own (the ingest bounds event size).
public struct RecordBuilder {
    /// About 1 MiB of events per record, as DESIGN.md says.
    public static let defaultMaxRecordBytes = 1 << 20

    public let maxRecordBytes: Int
    public let level: Int32
    private let createdAt: Int64
    private var pending = ByteBuffer()
    private var pendingEvents: UInt32 = 0
    private var records: [QueueRecord] = []

    public init(maxRecordBytes: Int = defaultMaxRecordBytes, level: Int32 = Gzip.defaultLevel, createdAt: Int64 = RecordTime.now()) {
        precondition(maxRecordBytes > 0 && maxRecordBytes <= Int(UInt32.max))
        self.maxRecordBytes = maxRecordBytes
        self.level = level
        self.createdAt = createdAt
    }

    /// Events added so far.
    public var eventCount: Int { records.reduce(Int(pendingEvents)) { $0 + Int($1.eventCount) } }

    /// Adds one event: a JSON object without a trailing newline.
    public mutating func append(line: some Collection<UInt8>) {
        appendLine(length: line.count) { $0.writeBytes(line) }
    }

    /// Adds one event of `length` bytes that `write` writes (without the newline): for events put
    /// together from pieces, without an intermediate copy.
    public mutating func appendLine(length: Int, _ write: (inout ByteBuffer) -> Void) {
        if pending.readableBytes > 0 && pending.readableBytes + length + 1 > maxRecordBytes {
            flush()
        }
        write(&pending)
        pending.writeInteger(UInt8(ascii: "\n"))
        pendingEvents += 1
    }

    /// Adds one event from a buffer, without copying it to an intermediate array.
    public mutating func append(line: ByteBuffer) {
        line.withUnsafeReadableBytes { append(line: $0) }
    }

    /// Adds a record whose payload is `member`, one gzip member of `eventCount` NDJSON lines (each ending
    /// in a newline) that are `uncompressedLength` bytes once inflated, stored as it is: no second deflate.
    /// The caller has inflated and validated it. Events added before come first (they are flushed into a
    /// record of their own), so the order of events is kept.
    public mutating func append(member: ByteBuffer, eventCount: UInt32, uncompressedLength: UInt32) {
        if pendingEvents > 0 { flush() }
        records.append(QueueRecord(eventCount: eventCount, createdAt: createdAt, uncompressedLength: uncompressedLength, payload: member))
    }

    /// The events added so far, uncompressed (NDJSON, every line ending in a newline), and how many they are,
    /// when none has been sealed into a record yet: for a caller that packs them with other events
    /// (`append(lines:events:)`) instead of compressing them alone. The builder is empty afterwards. Nil,
    /// with nothing taken, when a record was sealed already or nothing was added.
    public mutating func takeLines() -> (lines: ByteBuffer, events: UInt32)? {
        guard records.isEmpty, pendingEvents > 0 else { return nil }
        defer {
            pending = ByteBuffer()
            pendingEvents = 0
        }
        return (pending, pendingEvents)
    }

    /// Adds `events` whole NDJSON lines (every one ending in a newline), as `takeLines` gives them: they go
    /// into the same record as the events before them when the record has room for all of them.
    public mutating func append(lines: ByteBuffer, events: UInt32) {
        if pending.readableBytes > 0 && pending.readableBytes + lines.readableBytes > maxRecordBytes {
            flush()
        }
        pending.writeImmutableBuffer(lines)
        pendingEvents += events
    }

    /// Compresses what is left and returns the batch. The builder is empty afterwards.
    public mutating func finish() -> EventBatch {
        if pendingEvents > 0 { flush() }
        defer { records = [] }
        return EventBatch(records: records)
    }

    private mutating func flush() {
        var payload = ByteBuffer()
        pending.withUnsafeReadableBytes { Gzip.compress($0, level: level, into: &payload) }
        records.append(QueueRecord(
            eventCount: pendingEvents,
            createdAt: createdAt,
            uncompressedLength: UInt32(pending.readableBytes),
            payload: payload
        ))
        pending.clear()
        pendingEvents = 0
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
public func currentTimeMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// The version of Ferry, written into the queues it makes (`written-by`), so that an older Ferry can say
/// which version wrote a queue it cannot read.
public let ferryVersion = "0.2.0-dev"
