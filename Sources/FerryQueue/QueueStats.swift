/// Counters and sizes kept in `meta` under the key `state`, updated in every write transaction, so that
/// stats are O(1) and survive restarts. Only the writer thread changes them.
struct QueueState: Hashable, Sendable {
    /// The sequence number the next stored record gets. Never reused.
    var nextSequence: UInt64 = 1
    var appendedRecords: UInt64 = 0
    var appendedEvents: UInt64 = 0
    var deliveredRecords: UInt64 = 0
    var deliveredEvents: UInt64 = 0
    var droppedRecords: UInt64 = 0
    var droppedEvents: UInt64 = 0
    var deadRecordsTotal: UInt64 = 0
    var deadEventsTotal: UInt64 = 0
    var requeuedEvents: UInt64 = 0
    var purgedEvents: UInt64 = 0
    var duplicateBatches: UInt64 = 0
    /// Events and bytes now in `records`.
    var storedEvents: UInt64 = 0
    var storedBytes: UInt64 = 0
    /// Events and bytes now in `dead`.
    var deadEvents: UInt64 = 0
    var deadBytes: UInt64 = 0

    private static let fieldCount = 16

    var fields: [UInt64] {
        [nextSequence, appendedRecords, appendedEvents, deliveredRecords, deliveredEvents, droppedRecords, droppedEvents,
         deadRecordsTotal, deadEventsTotal, requeuedEvents, purgedEvents, duplicateBatches, storedEvents, storedBytes,
         deadEvents, deadBytes]
    }

    /// Encoding: a field count, then that many big-endian UInt64. Unknown trailing fields of a newer
    /// writer are ignored; missing ones of an older writer read as zero.
    func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + 8 * Self.fieldCount)
        withUnsafeBytes(of: UInt32(Self.fieldCount).bigEndian) { bytes += $0 }
        for field in fields { withUnsafeBytes(of: field.bigEndian) { bytes += $0 } }
        return bytes
    }

    init() {}

    init?(decoding bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 4 else { return nil }
        let count = Int(UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)))
        guard bytes.count == 4 + 8 * count else { return nil }
        var values = [UInt64](repeating: 0, count: Self.fieldCount)
        for i in 0..<min(count, Self.fieldCount) {
            values[i] = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 4 + 8 * i, as: UInt64.self))
        }
        (nextSequence, appendedRecords, appendedEvents, deliveredRecords, deliveredEvents, droppedRecords, droppedEvents,
         deadRecordsTotal, deadEventsTotal, requeuedEvents, purgedEvents, duplicateBatches, storedEvents, storedBytes,
         deadEvents, deadBytes) =
            (values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7], values[8], values[9],
             values[10], values[11], values[12], values[13], values[14], values[15])
    }
}

/// A snapshot of the queue, O(1) to take: sizes, counters and LMDB's map use.
public struct QueueStats: Sendable, Hashable {
    /// Records waiting in `records` (delivered ones are deleted).
    public var records: Int
    /// Events in those records.
    public var events: UInt64
    /// Stored bytes of those records (header and compressed payload).
    public var bytes: UInt64
    /// Creation time of the oldest waiting record (ms since the Unix epoch), nil when empty.
    public var oldestCreatedAt: Int64?
    /// Sequence numbers of the oldest and newest waiting records, nil when empty.
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    /// Records, events and bytes in `dead`.
    public var deadRecords: Int
    public var deadEvents: UInt64
    public var deadBytes: UInt64
    /// Cumulative counters since the queue was made.
    public var appendedRecords: UInt64
    public var appendedEvents: UInt64
    public var deliveredRecords: UInt64
    public var deliveredEvents: UInt64
    public var droppedRecords: UInt64
    public var droppedEvents: UInt64
    public var deadRecordsTotal: UInt64
    public var deadEventsTotal: UInt64
    public var requeuedEvents: UInt64
    public var purgedEvents: UInt64
    /// Appends answered as duplicates of a `Ferry-Batch` id already stored.
    public var duplicateBatches: UInt64
    /// The sequence number the next record will get.
    public var nextSequence: UInt64
    /// LMDB's map size and the bytes of it in use (last used page × page size).
    public var mapSize: Int
    public var mapUsedBytes: Int
    /// The configured bound.
    public var maxBytes: Int
    /// Write transactions committed since the queue was opened, and the changes they carried: their ratio
    /// is the group commit's batching factor.
    public var groupCommits: UInt64 = 0
    public var groupedOperations: UInt64 = 0

    /// Per output (consumer), in the configured order.
    public var outputs: [OutputStats] = []

    /// Fraction of `maxBytes` in use, records and dead together.
    public var fillRatio: Double { maxBytes > 0 ? Double(bytes + deadBytes) / Double(maxBytes) : 0 }
}

extension QueueStats {
    init(state: QueueState, records: Int, deadRecords: Int, first: (UInt64, Int64)?, last: UInt64?, info: Environment.Info, maxBytes: Int) {
        self.records = records
        self.events = state.storedEvents
        self.bytes = state.storedBytes
        self.oldestCreatedAt = first?.1
        self.firstSequence = first?.0
        self.lastSequence = last
        self.deadRecords = deadRecords
        self.deadEvents = state.deadEvents
        self.deadBytes = state.deadBytes
        self.appendedRecords = state.appendedRecords
        self.appendedEvents = state.appendedEvents
        self.deliveredRecords = state.deliveredRecords
        self.deliveredEvents = state.deliveredEvents
        self.droppedRecords = state.droppedRecords
        self.droppedEvents = state.droppedEvents
        self.deadRecordsTotal = state.deadRecordsTotal
        self.deadEventsTotal = state.deadEventsTotal
        self.requeuedEvents = state.requeuedEvents
        self.purgedEvents = state.purgedEvents
        self.duplicateBatches = state.duplicateBatches
        self.nextSequence = state.nextSequence
        self.mapSize = info.mapSize
        self.mapUsedBytes = (info.lastPage + 1) * info.pageSize
        self.maxBytes = maxBytes
    }
}

/// One output's view of the queue: what it still has to deliver, how far behind it is, what it delivered,
/// buried and never got.
public struct OutputStats: Sendable, Hashable {
    public var name: String
    /// Events and stored bytes it has not settled yet: its lag in size.
    public var pendingEvents: UInt64
    public var pendingBytes: UInt64
    /// When the oldest record it has not settled was made (ms since the Unix epoch): its lag in time.
    public var oldestPendingCreatedAt: Int64?
    public var deliveredRecords: UInt64
    public var deliveredEvents: UInt64
    /// Records in its dead set now, and buried in all.
    public var deadRecords: UInt64
    public var deadRecordsTotal: UInt64
    /// Events it never got: dropped for it because it lagged (`when_lagging: drop`), and dropped for
    /// everyone (`when_full: drop_oldest`) before it delivered them.
    public var droppedLaggingEvents: UInt64
    public var droppedFullEvents: UInt64
    /// Every sequence below it is settled for this output.
    public var watermark: UInt64
    public var whenLagging: ConsumerSettings.WhenLagging

    init(_ consumer: ConsumerState, oldestPendingCreatedAt: Int64?) {
        name = consumer.name
        pendingEvents = consumer.pendingEvents
        pendingBytes = consumer.pendingBytes
        self.oldestPendingCreatedAt = oldestPendingCreatedAt
        deliveredRecords = consumer.deliveredRecords
        deliveredEvents = consumer.deliveredEvents
        deadRecords = consumer.deadRecords
        deadRecordsTotal = consumer.deadRecordsTotal
        droppedLaggingEvents = consumer.droppedLaggingEvents
        droppedFullEvents = consumer.droppedFullEvents
        watermark = consumer.watermark
        whenLagging = consumer.settings.whenLagging
    }
}
