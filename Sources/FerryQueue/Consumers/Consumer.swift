import FerryWire

/// One output's view of the queue: its own leases, acknowledgements, dead set and remembered batches over
/// the one stored copy. Get it with `Queue.consumer(named:)`.
///
/// Each consumer gets every record once, oldest first (with its own fresh lane), until it acknowledges,
/// buries or is moved past it; a record is deleted when the last consumer is done with it. Consumers do
/// not wait for each other: a slow one holds records, never the others' leases.
public struct Consumer: Sendable {
    public let queue: Queue
    public let name: String
    let id: UInt32

    /// Hands out this consumer's next records (see `Queue.lease`): a remembered batch waiting to go again,
    /// released records, the fresh lane, then records not leased yet, oldest first. Records this consumer
    /// is done with are never handed out again.
    public func lease(maxRecords: Int = 256, maxBytes: Int = 4 << 20, maxEvents: Int = .max,
                      freshIfBacklogOlderThan freshAge: Duration? = nil) throws(QueueError) -> Lease {
        try queue.lease(consumer: id, LeasePlanner.Limits(maxRecords: maxRecords, maxBytes: maxBytes, maxEvents: maxEvents, freshIfBacklogOlderThan: freshAge))
    }

    /// Gives leased records back: this consumer leases them again, before newer ones.
    public func release(_ sequences: some Sequence<UInt64>) {
        queue.leases.withLock { $0[id]?.release(sequences) }
        queue.wakeWaiters()  // leasable again: an idle lease loop takes them now
    }

    /// Gives every record of `lease` back.
    public func release(_ lease: Lease) { release(lease.sequences) }

    /// Forgets every outstanding lease of this consumer, as a restart of Ferry would: what it has not
    /// settled is leased again, remembered batches first. For an output that failed and is started again:
    /// the records its dead instance held would otherwise never be handed out until Ferry restarts.
    /// Settling a record twice is a no-op, so a late acknowledgement of the dead instance harms nothing.
    public func restartLeases() {
        queue.leases.withLock { planners in
            guard let old = planners[id] else { return }
            planners[id] = LeasePlanner(remembered: old.remembered, from: 0)
        }
        queue.wakeWaiters()
    }

    /// Settles delivered records for this consumer, durably (returns after the commit). A record every
    /// consumer is done with is deleted in the same transaction. Records already settled or gone are
    /// skipped. Returns how many were settled.
    @discardableResult
    public func acknowledge(_ sequences: [UInt64]) async throws(QueueError) -> Int {
        try await queue.settle(consumer: id, sequences, as: .delivered)
    }

    /// Settles every record of `lease` as delivered.
    @discardableResult
    public func acknowledge(_ lease: Lease) async throws(QueueError) -> Int {
        try await acknowledge(lease.sequences)
    }

    /// Moves records to this consumer's dead set with `reason` (its downstream refused them for good, or
    /// they are damaged). The record is not copied: it stays in `records` while another consumer still
    /// needs it, then moves to `dead`. Returns how many were buried.
    @discardableResult
    public func moveToDead(_ sequences: [UInt64], reason: String) async throws(QueueError) -> Int {
        try await queue.settle(consumer: id, sequences, as: .buried(reason: Array(reason.utf8.prefix(DeadRecord.maxReasonBytes))))
    }

    /// Records that the leased `sequences` go downstream as one batch (see `Queue.remember`), with `note`:
    /// what the output needs to know after a restart about where the batch went (at most a few hundred
    /// bytes; it rides the group commit).
    @discardableResult
    public func remember(_ sequences: [UInt64], note: [UInt8] = []) async throws(QueueError) -> Bool {
        try await queue.remember(consumer: id, sequences, note: note)
    }

    /// Replaces the note of the batch this consumer remembered that starts at `first`; false if there is none.
    @discardableResult
    public func renote(startingAt first: UInt64, note: [UInt8]) async throws(QueueError) -> Bool {
        try await queue.renote(consumer: id, startingAt: first, note: note)
    }

    /// The batch this consumer remembered that starts at `first` (its last sequence and note), or nil.
    /// A lease whose first record has one is that batch going again after a restart or a release.
    public func rememberedBatch(startingAt first: UInt64) throws(QueueError) -> (last: UInt64, note: [UInt8])? {
        try queue.rememberedBatch(consumer: id, startingAt: first)
    }

    /// Returns when there may be records to lease (an append or a requeue committed, leased records were
    /// given back), after `timeout`, or when the task is cancelled; see `Queue.waitForAppend`.
    public func waitForAppend(since token: UInt64? = nil, timeout: Duration) async {
        await queue.waitForAppend(since: token, timeout: timeout)
    }
}

/// The records a consumer still has to settle, over a record cursor: records below its watermark and in
/// its settled ranges (as committed, read in the same transaction) are skipped.
struct PendingRecordSource: LeaseSource {
    typealias Entry = RecordCursorSource.Entry
    var base: RecordCursorSource
    let watermark: UInt64
    let settled: SequenceRanges

    private func isDone(_ sequence: UInt64) -> Bool { sequence < watermark || settled.contains(sequence) }

    private mutating func forward(_ entry: Entry?) throws -> Entry? {
        var current = entry
        while let found = current, isDone(found.sequence) {
            if let range = settled.range(holding: found.sequence), range.upperBound < .max {
                current = try base.seek(range.upperBound + 1)
            } else {
                current = try base.next()
            }
        }
        return current
    }

    private mutating func backward(_ entry: Entry?) throws -> Entry? {
        var current = entry
        while let found = current, isDone(found.sequence) {
            guard found.sequence >= watermark else { return nil }
            current = try base.previous()
        }
        return current
    }

    mutating func seek(_ sequence: UInt64) throws -> Entry? { try forward(try base.seek(max(sequence, watermark))) }
    mutating func next() throws -> Entry? { try forward(try base.next()) }
    mutating func previous() throws -> Entry? { try backward(try base.previous()) }
    mutating func last() throws -> Entry? { try backward(try base.last()) }
    mutating func entry(at sequence: UInt64) throws -> Entry? {
        isDone(sequence) ? nil : try base.entry(at: sequence)
    }

    func sequence(of entry: Entry) -> UInt64 { base.sequence(of: entry) }
    func size(of entry: Entry) -> Int { base.size(of: entry) }
    func events(of entry: Entry) -> Int { base.events(of: entry) }
    func createdAt(of entry: Entry) -> Int64? { base.createdAt(of: entry) }
}
