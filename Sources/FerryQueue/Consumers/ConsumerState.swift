/// Sorted, disjoint, non-adjacent ranges of sequence numbers: what a consumer has settled above its
/// watermark (deliveries settle out of order: concurrent requests, the fresh lane, Kafka's partitions).
struct SequenceRanges: Hashable, Sendable {
    private(set) var ranges: [ClosedRange<UInt64>] = []

    init(_ ranges: [ClosedRange<UInt64>] = []) {
        for range in ranges { insert(range) }
    }

    var isEmpty: Bool { ranges.isEmpty }

    /// Index of the first range whose upper bound is ≥ `sequence`.
    private func index(from sequence: UInt64) -> Int {
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound < sequence { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func contains(_ sequence: UInt64) -> Bool {
        let i = index(from: sequence)
        return i < ranges.count && ranges[i].contains(sequence)
    }

    /// The range holding `sequence`, if any.
    func range(holding sequence: UInt64) -> ClosedRange<UInt64>? {
        let i = index(from: sequence)
        return i < ranges.count && ranges[i].contains(sequence) ? ranges[i] : nil
    }

    /// Adds `range`, merging it with overlapping and adjacent ranges.
    mutating func insert(_ range: ClosedRange<UInt64>) {
        var low = range.lowerBound
        var high = range.upperBound
        var i = index(from: low == 0 ? 0 : low - 1)
        let start = i
        while i < ranges.count && (ranges[i].lowerBound <= high || (high < .max && ranges[i].lowerBound == high + 1)) {
            low = min(low, ranges[i].lowerBound)
            high = max(high, ranges[i].upperBound)
            i += 1
        }
        ranges.replaceSubrange(start..<i, with: [low...high])
    }

    /// Removes everything below `sequence`.
    mutating func removeBelow(_ sequence: UInt64) {
        let i = index(from: sequence)
        ranges.removeFirst(i)
        if let first = ranges.first, first.lowerBound < sequence {
            ranges[0] = sequence...first.upperBound
        }
    }

    /// Removes `sequence` (splitting its range).
    mutating func remove(_ sequence: UInt64) {
        let i = index(from: sequence)
        guard i < ranges.count, ranges[i].contains(sequence) else { return }
        let range = ranges[i]
        var pieces: [ClosedRange<UInt64>] = []
        if range.lowerBound < sequence { pieces.append(range.lowerBound...(sequence - 1)) }
        if sequence < range.upperBound { pieces.append((sequence + 1)...range.upperBound) }
        ranges.replaceSubrange(i...i, with: pieces)
    }
}

/// A consumer's durable state, kept by the writer thread and written to the `outputs` table (key: its
/// name) in the transactions that change it; its settled ranges go to the `acks` table.
///
/// `watermark`: every sequence below it is done for this consumer (acknowledged, buried, dropped, or no
/// longer stored). `settled`: the sparse ranges at or above it that are done too.
struct ConsumerState: Hashable, Sendable {
    /// Short, stable, never reused: the prefix of the consumer's keys in `acks`, `batches` and `dead_marks`.
    let id: UInt32
    let name: String
    var watermark: UInt64
    var settled = SequenceRanges()
    /// Events and stored bytes of the records this consumer still has to settle.
    var pendingEvents: UInt64 = 0
    var pendingBytes: UInt64 = 0
    var deliveredRecords: UInt64 = 0
    var deliveredEvents: UInt64 = 0
    /// Records this consumer buried (moved to its dead set), in all, and now.
    var deadRecordsTotal: UInt64 = 0
    var deadRecords: UInt64 = 0
    /// Events this consumer never got: dropped for it because it lagged, and dropped for everyone by
    /// `when_full: drop_oldest` (or by age) before it settled them.
    var droppedLaggingEvents: UInt64 = 0
    var droppedFullEvents: UInt64 = 0
    /// The configured policy (not stored: it comes from the configuration at each open).
    var settings: ConsumerSettings
    /// Changed in the current transaction: rewrite its row and ranges at the group's end.
    var dirty = false

    init(id: UInt32, name: String, watermark: UInt64, settings: ConsumerSettings) {
        self.id = id
        self.name = name
        self.watermark = watermark
        self.settings = settings
    }

    func isDone(_ sequence: UInt64) -> Bool {
        sequence < watermark || settled.contains(sequence)
    }

    private static let version: UInt8 = 1
    private static let counterCount = 9

    /// Value in `outputs`: version (1) · id (UInt32) · watermark (UInt64) · counter count (UInt32) · that
    /// many UInt64 (pending events and bytes, delivered records and events, dead total and now, dropped
    /// lagging and full events, and one reserved), all big-endian. An older reader ignores extra counters.
    func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.version]
        withUnsafeBytes(of: id.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: watermark.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: UInt32(Self.counterCount).bigEndian) { bytes += $0 }
        for counter in [pendingEvents, pendingBytes, deliveredRecords, deliveredEvents, deadRecordsTotal, deadRecords,
                        droppedLaggingEvents, droppedFullEvents, 0] {
            withUnsafeBytes(of: counter.bigEndian) { bytes += $0 }
        }
        return bytes
    }

    /// Decodes a row of `outputs`; nil when it is damaged.
    init?(name: String, decoding bytes: UnsafeRawBufferPointer, settings: ConsumerSettings) {
        guard bytes.count >= 17, bytes[0] == Self.version else { return nil }
        id = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt32.self))
        self.name = name
        watermark = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 5, as: UInt64.self))
        let count = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 13, as: UInt32.self)))
        guard bytes.count == 17 + 8 * count else { return nil }
        var values = [UInt64](repeating: 0, count: Self.counterCount)
        for i in 0..<min(count, Self.counterCount) {
            values[i] = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 17 + 8 * i, as: UInt64.self))
        }
        (pendingEvents, pendingBytes, deliveredRecords, deliveredEvents, deadRecordsTotal, deadRecords,
         droppedLaggingEvents, droppedFullEvents) = (values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7])
        self.settings = settings
    }
}

/// Keys of the per-consumer tables: the consumer's id (4 bytes, big-endian), then a sequence (8 bytes).
@inline(__always)
func withConsumerKey<R>(_ id: UInt32, _ sequence: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    var scratch: (UInt64, UInt64) = (0, 0)
    return try withUnsafeMutableBytes(of: &scratch) { raw in
        raw.storeBytes(of: id.bigEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: sequence.bigEndian, toByteOffset: 4, as: UInt64.self)
        return try body(UnsafeRawBufferPointer(rebasing: raw[0..<12]))
    }
}

/// The id and the sequence of a per-consumer key, nil when it is not 12 bytes.
@inline(__always)
func consumerKey(_ key: UnsafeRawBufferPointer) -> (id: UInt32, sequence: UInt64)? {
    guard key.count == 12 else { return nil }
    return (UInt32(bigEndian: key.loadUnaligned(as: UInt32.self)), UInt64(bigEndian: key.loadUnaligned(fromByteOffset: 4, as: UInt64.self)))
}
