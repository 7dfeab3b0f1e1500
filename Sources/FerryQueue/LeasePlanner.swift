import FerryWire

/// The records a lease planner looks at: the stored records in sequence order. The queue implements it
/// over an LMDB cursor inside one read transaction (`RecordCursorSource`); the planner's tests over an
/// array. Moving operations position the source like a cursor.
protocol LeaseSource {
    associatedtype Entry
    /// The first entry at or after `sequence`.
    mutating func seek(_ sequence: UInt64) throws -> Entry?
    /// The entry after the current one.
    mutating func next() throws -> Entry?
    /// The entry before the current one.
    mutating func previous() throws -> Entry?
    /// The newest entry.
    mutating func last() throws -> Entry?
    /// The entry of exactly `sequence`, if stored; may move the position.
    mutating func entry(at sequence: UInt64) throws -> Entry?

    func sequence(of entry: Entry) -> UInt64
    /// Stored bytes of the record.
    func size(of entry: Entry) -> Int
    /// Events in the record (0 when its header cannot be read).
    func events(of entry: Entry) -> Int
    /// When the record was made, nil when its header cannot be read.
    func createdAt(of entry: Entry) -> Int64?
}

/// Which records the next lease hands out: the policy of `Queue.lease`, without I/O. A value type, so
/// that a failed read leaves the queue's copy untouched (the queue plans on a copy and keeps it only
/// when the lease succeeded), and so that its tests are exact.
///
/// Order of the policies in one lease:
/// 1. A remembered batch waiting to go again (one of the last run's, or a released one) goes whole and
///    by itself, whatever the limits: its `Ferry-Batch` id must not change.
/// 2. Released records (of no remembered batch), oldest first.
/// 3. With `freshIfBacklogOlderThan`, when the oldest record not leased yet was made that long before
///    the newest, the fresh lane: the newest records (walking down from the newest, never to the head
///    nor into a remembered batch), or, once the lane is open, what was appended after it.
/// 4. Records not leased yet, oldest first, stepping over the fresh lane and over remembered batches
///    (those go by themselves, in 1).
///
/// A record is never in two outstanding leases: the planner hands out each sequence once, until it is
/// released (or the queue reopens, which starts a new planner with the remembered batches only).
struct LeasePlanner {
    /// The next sequence number not leased yet.
    private(set) var next: UInt64 = 0
    /// Released records (of no remembered batch) to lease again, ascending.
    private(set) var redeliver: [UInt64] = []
    /// Every remembered batch, leased now or waiting; ascending, disjoint.
    private(set) var remembered: [ClosedRange<UInt64>] = []
    /// Remembered batches to lease again whole, ascending: those of the last run, and released ones.
    private(set) var waiting: [ClosedRange<UInt64>] = []
    /// The fresh lane: records above `next` leased newest-first while a backlog drains.
    private(set) var fresh: ClosedRange<UInt64>?

    /// The bounds of one lease. At most `maxRecords` records, `maxBytes` stored bytes and `maxEvents`
    /// events, unless the first record alone is larger.
    struct Limits {
        var maxRecords: Int
        var maxBytes: Int
        var maxEvents: Int
        /// Open or extend the fresh lane when the backlog is at least this old (see the type's doc).
        var freshIfBacklogOlderThan: Duration?
    }

    /// A planner after an open: the last run's remembered batches wait to go again, first; records not
    /// leased yet start at `next` (the consumer's watermark).
    init(remembered batches: [ClosedRange<UInt64>] = [], from next: UInt64 = 0) {
        remembered = batches
        waiting = batches
        self.next = next
    }

    /// The entries of the next lease: released records first (ascending), then newer ones (ascending); a
    /// remembered batch or a fresh-lane lease is ascending. Empty when there is nothing to lease.
    mutating func plan<Source: LeaseSource>(_ source: inout Source, _ limits: Limits) throws -> [Source.Entry] {
        // 1. A remembered batch goes again as exactly the records it had (minus any already gone).
        while let batch = waiting.first {
            var taken: [Source.Entry] = []
            var entry = try source.seek(batch.lowerBound)
            while let current = entry, source.sequence(of: current) <= batch.upperBound {
                taken.append(current)
                entry = try source.next()
            }
            waiting.removeFirst()
            if taken.isEmpty {
                forget(batch)  // delivered or dropped meanwhile
                continue
            }
            return taken
        }

        var page = Page<Source.Entry>(limits: limits)
        // 2. Released records.
        while !page.full, let sequence = redeliver.first {
            guard let entry = try source.entry(at: sequence) else {
                redeliver.removeFirst()
                continue
            }
            guard page.fits(entry, source) else { break }
            redeliver.removeFirst()
            page.take(entry, source)
        }
        guard !page.full else { return page.taken }

        // 3. The fresh lane.
        if let freshAge = limits.freshIfBacklogOlderThan, page.taken.isEmpty {
            if let lane = fresh {
                // The lane goes on with what was appended after it.
                var entry = try source.seek(lane.upperBound + 1)
                var top = lane.upperBound
                while let current = entry, page.fits(current, source) {
                    page.take(current, source)
                    top = source.sequence(of: current)
                    if page.full { break }
                    entry = try source.next()
                }
                fresh = lane.lowerBound...top
                if !page.taken.isEmpty { return page.taken }
            } else if let head = try source.seek(next), let oldest = source.createdAt(of: head),
                      let newest = try source.last(), source.sequence(of: newest) > source.sequence(of: head),
                      let newestAt = source.createdAt(of: newest), Duration.milliseconds(newestAt - oldest) >= freshAge {
                // A backlog: open the lane at the newest records, walking down, never to the head nor into
                // a remembered batch (one of the last run's, which goes by itself).
                let headSequence = source.sequence(of: head)
                var entry: Source.Entry? = newest
                while let current = entry, source.sequence(of: current) > headSequence,
                      batch(holding: source.sequence(of: current)) == nil, page.fits(current, source) {
                    page.take(current, source)
                    if page.full { break }
                    entry = try source.previous()
                }
                if let low = page.taken.last.map({ source.sequence(of: $0) }) {
                    fresh = low...source.sequence(of: newest)
                    return page.taken.reversed()
                }
            }
        }

        // 4. Oldest first.
        var entry = try source.seek(next)
        while let current = entry {
            let sequence = source.sequence(of: current)
            // The fresh lane is leased already: step over it.
            if let lane = fresh, sequence >= lane.lowerBound {
                guard page.taken.isEmpty else { break }
                next = lane.upperBound + 1
                fresh = nil
                entry = try source.seek(next)
                continue
            }
            // Remembered batches (the last run's, here) go by themselves (above): step over them.
            if let batch = batch(holding: sequence) {
                guard page.taken.isEmpty else { break }
                next = batch.upperBound + 1
                entry = try source.seek(next)
                continue
            }
            guard page.fits(current, source) else { break }
            page.take(current, source)
            next = sequence + 1
            if page.full { break }
            entry = try source.next()
        }
        return page.taken
    }

    /// Gives leased records back: they are leased again, before newer ones (a remembered batch whole).
    mutating func release(_ sequences: some Sequence<UInt64>) {
        for sequence in sequences {
            if let batch = batch(holding: sequence) {
                wait(batch)
            } else {
                redeliver.append(sequence)
            }
        }
        redeliver.sort()
        redeliver = redeliver.uniqued()
    }

    // MARK: Remembered batches

    /// The remembered batch holding `sequence`, if any (binary search).
    func batch(holding sequence: UInt64) -> ClosedRange<UInt64>? {
        let i = index(from: sequence)
        return i < remembered.count && remembered[i].contains(sequence) ? remembered[i] : nil
    }

    /// The remembered batches that hold any of `sequences`.
    func batches(holding sequences: [UInt64]) -> [ClosedRange<UInt64>] {
        guard !remembered.isEmpty else { return [] }
        var found: [ClosedRange<UInt64>] = []
        for sequence in sequences {
            if let batch = batch(holding: sequence), !found.contains(batch) { found.append(batch) }
        }
        return found
    }

    /// Adds `batch` unless it overlaps one already remembered.
    mutating func add(_ batch: ClosedRange<UInt64>) -> Bool {
        let i = index(from: batch.lowerBound)
        if i < remembered.count && remembered[i].overlaps(batch) { return false }
        remembered.insert(batch, at: i)
        return true
    }

    mutating func forget(_ batch: ClosedRange<UInt64>) {
        remembered.removeAll { $0 == batch }
        waiting.removeAll { $0 == batch }
    }

    /// Index of the first remembered batch whose upper bound is ≥ `sequence`.
    private func index(from sequence: UInt64) -> Int {
        var low = 0
        var high = remembered.count
        while low < high {
            let mid = (low + high) / 2
            if remembered[mid].upperBound < sequence { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Puts a remembered batch back in line to be leased again, once.
    private mutating func wait(_ batch: ClosedRange<UInt64>) {
        guard !waiting.contains(batch) else { return }
        waiting.append(batch)
        waiting.sort { $0.lowerBound < $1.lowerBound }
    }

    /// The entries of one lease being put together, against its limits.
    private struct Page<Entry> {
        let limits: Limits
        var taken: [Entry] = []
        var bytes = 0
        var events = 0

        init(limits: Limits) { self.limits = limits }

        var full: Bool {
            taken.count >= limits.maxRecords || (!taken.isEmpty && (bytes >= limits.maxBytes || events >= limits.maxEvents))
        }

        func fits<Source: LeaseSource>(_ entry: Entry, _ source: Source) -> Bool where Source.Entry == Entry {
            guard !taken.isEmpty else { return true }
            return bytes + source.size(of: entry) <= limits.maxBytes && events + source.events(of: entry) <= limits.maxEvents
        }

        mutating func take<Source: LeaseSource>(_ entry: Entry, _ source: Source) where Source.Entry == Entry {
            bytes += source.size(of: entry)
            events += source.events(of: entry)
            taken.append(entry)
        }
    }
}

/// The queue's records as a `LeaseSource`: one cursor of one read transaction. Entries point into LMDB's
/// map and are valid until the transaction ends. A key that is not a sequence number ends the view.
struct RecordCursorSource: LeaseSource {
    typealias Entry = (sequence: UInt64, value: UnsafeRawBufferPointer)
    let txn: Transaction
    let records: Database
    let cursor: Cursor

    init(_ txn: Transaction, records: Database) throws {
        self.txn = txn
        self.records = records
        self.cursor = try txn.cursor(records)
    }

    private func entry(_ found: Cursor.Entry?) -> Entry? {
        guard let found, let sequence = FerryQueue.sequence(fromKey: found.key) else { return nil }
        return (sequence, found.value)
    }

    mutating func seek(_ sequence: UInt64) throws -> Entry? { entry(try withSequenceKey(sequence) { try cursor.seek($0) }) }
    mutating func next() throws -> Entry? { entry(try cursor.next()) }
    mutating func previous() throws -> Entry? { entry(try cursor.previous()) }
    mutating func last() throws -> Entry? { entry(try cursor.last()) }
    mutating func entry(at sequence: UInt64) throws -> Entry? {
        try withSequenceKey(sequence) { key in try txn.get(records, key).map { (sequence, $0) } }
    }

    func sequence(of entry: Entry) -> UInt64 { entry.sequence }
    func size(of entry: Entry) -> Int { entry.value.count }
    func events(of entry: Entry) -> Int { (try? QueueRecord.header(of: entry.value)).map { Int($0.eventCount) } ?? 0 }
    func createdAt(of entry: Entry) -> Int64? { try? QueueRecord.header(of: entry.value).createdAt }
}
