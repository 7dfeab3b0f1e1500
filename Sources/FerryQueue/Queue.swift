internal import CLMDB
public import FerryWire
public import Logging
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Ferry's durable queue: events in an LMDB environment, appended with group commit, leased in order,
/// deleted when delivered.
///
/// ## What is durable, when
/// - `append` returns only after the transaction holding the batch is committed and fsynced (LMDB's
///   synced commit: data pages, fdatasync, meta page, fdatasync). What `append` acknowledged survives
///   SIGKILL and power loss, as far as the disk honours fsync.
/// - A batch is stored whole or not at all, even when it spans several records.
/// - Concurrent appends share one transaction and one fsync (group commit): one writer thread drains
///   every pending change, commits once, then resumes every waiter. A failure of one change (full queue)
///   undoes that change only; a failed commit fails every change of the group, and none is stored.
/// - `acknowledge`, `moveToDead`, `requeueDead` and `purgeDead` are committed the same way before they return.
///
/// ## Order
/// Records get increasing sequence numbers in commit order, never reused. `lease` hands them out oldest
/// first; released records are handed out again before newer ones. Requeued dead records get new numbers.
///
/// ## What can duplicate
/// Records leased but not acknowledged when the process stops are leased again after the next open
/// (at-least-once). A lease is in memory, unless its consumer `remember`s it: a remembered batch is
/// leased again after a restart (or a `release`) as exactly the same records, so the `Ferry-Batch` id
/// of its retry is the same and a receiving Ferry's `seen` table drops it. An append that failed stored
/// nothing; an append whose caller was cancelled while waiting may still be stored.
///
/// ## Caveats, with their fixes
/// - Values read from LMDB are valid only inside their transaction: every record is copied out, once,
///   after its CRC is checked in place.
/// - A long-lived reader pins old pages and the file grows: read transactions here last one call only.
///   Keep `ferry-tools export` runs short on a full queue, or expect `full` until they end.
/// - One process must not open the same environment twice (LMDB's POSIX locks are per process):
///   `open` takes an exclusive lock on `ferry.lock` and refuses a second open, in this process or another.
/// - A damaged record (CRC mismatch) is reported in `Lease.corrupt` with its sequence number; it is never
///   skipped silently and never stops the records after it. Move it to `dead`, or run `ferry-tools verify`.
/// - `MDB_MAP_FULL` and a full disk are `QueueError.full`: the append is refused, nothing stored is harmed.
public final class Queue: Sendable {
    /// The data directory.
    public let path: String
    public let configuration: QueueConfiguration
    /// This queue's agent id: random, made once when the queue was created, stored in `meta`.
    public let agentID: String

    /// The format version written in `meta` under `format`.
    public static let formatVersion: UInt32 = 1
    /// Named databases an environment may hold: today's seven, with room for the tables to come.
    static let maxDatabases: UInt32 = 16

    let environment: Environment
    let databases: Databases
    /// nil in read-only mode.
    private let writer: Writer?
    /// nil in read-only mode.
    private let lock: DirectoryLock?
    /// How this process opened the queue.
    public let mode: AccessMode

    /// How a process opens a queue.
    public enum AccessMode: Sendable, Hashable {
        /// The agent's mode: an exclusive lock on the directory, the writer thread, leases.
        case exclusive
        /// For tools reading a queue while an agent runs: LMDB read transactions only, no lock, no writer.
        /// Sees every commit of the agent; never blocks it. Writes fail with `.readOnly`.
        case readOnly
    }
    private let logger: Logger
    private let snapshot: StatsSnapshot
    let leases: Mutex<LeasePlanner>
    private let closed = Atomic<Bool>(false)
    private let appendWaiters: AppendWaiters

    private init(path: String, configuration: QueueConfiguration, agentID: String, environment: Environment,
                 databases: Databases, state: QueueState, stats: QueueStats, remembered: [ClosedRange<UInt64>],
                 lock: DirectoryLock?, mode: AccessMode, logger: Logger) {
        self.path = path
        self.leases = Mutex(LeasePlanner(remembered: remembered))
        self.configuration = configuration
        self.agentID = agentID
        self.environment = environment
        self.databases = databases
        self.lock = lock
        self.mode = mode
        self.logger = logger
        let snapshot = StatsSnapshot(stats)
        let waiters = AppendWaiters()
        self.snapshot = snapshot
        self.appendWaiters = waiters
        guard mode == .exclusive else {
            self.writer = nil
            return
        }
        let writer = Writer(environment: environment, databases: databases, configuration: configuration, path: path,
                             state: state, logger: logger, publish: { stats in
                                 let appended = snapshot.value.withLock { old in
                                     defer { old = stats }
                                     return stats.appendedRecords != old.appendedRecords || stats.requeuedEvents != old.requeuedEvents
                                 }
                                 if appended { waiters.resumeAll() }
                             })
        self.writer = writer
        writer.start()
    }

    deinit {
        close()
    }

    // MARK: Open and close

    /// Opens the queue in `path`, creating the directory and the environment if they do not exist.
    ///
    /// O(1) whatever the backlog: reads `meta` and the ends of `records`, scans nothing. Takes an exclusive
    /// lock on the directory. Throws, never traps, on: a directory held by another process (`.locked`),
    /// a file or LMDB environment that is not a Ferry queue (`.notAQueue`), another format version
    /// (`.incompatibleVersion`), a `data.mdb` shorter than LMDB says (`.truncated`).
    public static func open(at path: String, configuration: QueueConfiguration = QueueConfiguration(),
                            mode: AccessMode = .exclusive,
                            logger: Logger = Logger(label: "ferry.queue")) throws(QueueError) -> Queue {
        guard configuration.maxBytes > 0 else {
            throw QueueError(.invalidArgument, "queue.max_bytes must be positive, got \(configuration.maxBytes)")
        }
        let readOnly = mode == .readOnly
        let lock: DirectoryLock?
        if readOnly {
            var info = stat()
            guard stat(path + "/" + dataFileName, &info) == 0 else {
                throw QueueError(.notAQueue, "there is no queue in \(path) (no \(dataFileName)); give --data-dir the agent's queue.path")
            }
            guard info.st_size > 0 else {
                // A queue being made when the process or the machine stopped: nothing was ever stored in it.
                throw QueueError(.notAQueue, "\(path)/\(dataFileName) is empty: the queue there was never written (nothing was stored in it); start the agent on it to make it, or give --data-dir another queue")
            }
            lock = nil
        } else {
            try prepareDirectory(path)
            lock = try DirectoryLock(directory: path)
        }
        try checkDataFile(path)

        let environment: Environment
        do {
            environment = try Environment(path: path, mapSize: configuration.mapSize, maxDatabases: Queue.maxDatabases,
                                          flags: readOnly ? [.noTLS, .readOnly] : [.noTLS, .noMemInit])
        } catch {
            throw openError(error, path: path)
        }
        let cleared = environment.clearStaleReaders()
        try checkTruncation(environment, path: path)

        let databases: Databases
        let agentID: String
        let state: QueueState
        let stats: QueueStats
        var remembered: [ClosedRange<UInt64>] = []
        do {
            let txn = try environment.beginTransaction(readOnly: readOnly)
            do {
                (databases, agentID, state) = try initialize(txn, path: path, create: !readOnly)
                stats = try Queue.stats(in: txn, databases: databases, state: state, environment: environment,
                                        maxBytes: configuration.maxBytes)
                if !readOnly { remembered = try rememberedBatches(txn, databases: databases) }
            } catch {
                txn.abort()
                throw error
            }
            try txn.commit()
        } catch let error as QueueError {
            throw error
        } catch let error as LMDBError {
            throw openError(error, path: path)
        } catch {
            throw QueueError(.environmentFailed, "cannot open the queue in \(path): \(error)")
        }
        logger.info("queue opened", metadata: [
            "ferry.queue.path": "\(path)", "ferry.queue.records": "\(stats.records)",
            "ferry.queue.events": "\(stats.events)", "ferry.queue.bytes": "\(stats.bytes)",
            "ferry.queue.stale_readers_cleared": "\(cleared)", "ferry.queue.remembered_batches": "\(remembered.count)",
        ])
        return Queue(path: path, configuration: configuration, agentID: agentID, environment: environment,
                     databases: databases, state: state, stats: stats, remembered: remembered, lock: lock, mode: mode, logger: logger)
    }

    /// Commits what is pending, stops the writer and closes LMDB. Later calls fail with `.closed`.
    /// Call it once no read (lease, peek) is running.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        writer?.stop()
        environment.close()
        lock?.release()
    }

    // MARK: Append

    /// What an append stored.
    public struct AppendReceipt: Sendable, Hashable {
        /// Sequence numbers of the first and last record stored; nil for a duplicate.
        public var firstSequence: UInt64?
        public var lastSequence: UInt64?
        /// True when the batch id was already in `seen`: nothing was stored, and the caller may answer 200.
        public var duplicate: Bool
    }

    /// Stores `batch` durably: returns only after its records are committed and fsynced, all or none.
    ///
    /// With `batchID` (a `Ferry-Batch` value), an id already stored recently answers `duplicate` and stores
    /// nothing; a new one is recorded in `seen` in the same transaction as the records.
    /// Throws `.full` when there is no room (policy `block`, or LMDB's map or the disk full),
    /// `.batchTooLarge` when the batch alone exceeds `max_bytes`; in both cases nothing was stored.
    ///
    /// `positions` are written to the `positions` table in the same transaction as the records: an input's
    /// read position (a file offset, a journal cursor) is durable exactly when the events read up to it
    /// are, so a crash can neither lose those events nor store them twice. A batch without records is
    /// allowed when it carries positions (a position that moved past lines that make no event).
    public func append(_ batch: EventBatch, batchID: String? = nil, positions: [InputPosition] = []) async throws(QueueError) -> AppendReceipt {
        guard !batch.records.isEmpty || !positions.isEmpty else {
            throw QueueError(.invalidArgument, "an empty batch cannot be appended; send at least one event")
        }
        for position in positions where position.key.isEmpty || position.key.count > 400 {
            throw QueueError(.invalidArgument, "an input position key must be 1 to 400 bytes, got \(position.key.count)")
        }
        if let batchID, batchID.utf8.count > 400 {
            throw QueueError(.invalidArgument, "batch id is \(batchID.utf8.count) bytes, more than 400; use a shorter Ferry-Batch id")
        }
        // Encoding happens here, on the caller's task, so that the writer only copies bytes.
        let values = batch.records.map { (bytes: $0.encoded(), events: UInt64($0.eventCount)) }
        let total = values.reduce(0) { $0 + $1.bytes.readableBytes }
        let events = values.reduce(0) { $0 + $1.events }
        let seenKey = batchID.map { Array($0.utf8) }
        return try await perform(weight: total) { context throws -> AppendReceipt in
            try Self.applyAppend(&context, values: values, totalBytes: total, events: events, seenKey: seenKey, positions: positions)
        }
    }

    private static func applyAppend(_ context: inout WriteContext, values: [(bytes: ByteBuffer, events: UInt64)],
                                    totalBytes: Int, events: UInt64, seenKey: [UInt8]?, positions: [InputPosition]) throws -> AppendReceipt {
        let txn = context.txn
        let dbs = context.databases
        if let seenKey, try seenKey.withUnsafeBytes({ try txn.get(dbs.seen, $0) }) != nil {
            context.state.duplicateBatches += 1
            return AppendReceipt(firstSequence: nil, lastSequence: nil, duplicate: true)
        }
        if !positions.isEmpty {
            guard let table = dbs.positions else { throw QueueError(.readOnly, "the queue has no positions table") }
            for position in positions {
                try position.key.withUnsafeBytes { key in
                    if let value = position.value {
                        try value.withUnsafeBytes { try txn.put(table, key, $0) }
                    } else {
                        _ = try txn.delete(table, key)
                    }
                }
            }
            guard !values.isEmpty else { return AppendReceipt(firstSequence: nil, lastSequence: nil, duplicate: false) }
        }
        try makeRoom(&context, for: totalBytes)
        let first = context.state.nextSequence
        var sequence = first
        for value in values {
            try withSequenceKey(sequence) { key in
                try value.bytes.withUnsafeReadableBytes { try txn.put(dbs.records, key, $0, append: true) }
            }
            sequence += 1
        }
        context.state.nextSequence = sequence
        context.state.appendedRecords += UInt64(values.count)
        context.state.appendedEvents += events
        context.state.storedEvents += events
        context.state.storedBytes += UInt64(totalBytes)
        if let seenKey {
            var timeKey = withUnsafeBytes(of: UInt64(bitPattern: context.now).bigEndian) { Array($0) }
            timeKey += seenKey
            try seenKey.withUnsafeBytes { key in
                try timeKey.withUnsafeBytes { try txn.put(dbs.seen, key, UnsafeRawBufferPointer(rebasing: $0[..<8])) }
            }
            try timeKey.withUnsafeBytes { try txn.put(dbs.seenByTime, $0, UnsafeRawBufferPointer(start: nil, count: 0)) }
        }
        return AppendReceipt(firstSequence: first, lastSequence: sequence - 1, duplicate: false)
    }

    /// Applies the capacity policy for an append of `bytes`: throws `.full` / `.batchTooLarge`, or drops
    /// the oldest records (policy `drop_oldest`) until the append fits.
    private static func makeRoom(_ context: inout WriteContext, for bytes: Int) throws {
        let limit = UInt64(context.configuration.maxBytes)
        let needed = UInt64(bytes)
        guard needed <= limit else {
            throw QueueError(.batchTooLarge, "a batch of \(bytes) bytes can never fit in queue.max_bytes = \(limit); send smaller requests or raise queue.max_bytes")
        }
        var state = context.state
        guard state.storedBytes + state.deadBytes + needed > limit else { return }
        switch context.configuration.whenFull {
        case .block:
            throw QueueError(.full, "queue is full: \(state.storedBytes + state.deadBytes) of queue.max_bytes = \(limit) bytes stored; retry when the outputs have caught up, or raise queue.max_bytes or set when_full: drop_oldest")
        case .dropOldest:
            guard state.deadBytes + needed <= limit else {
                throw QueueError(.full, "queue is full of dead records (\(state.deadBytes) bytes of \(limit)); requeue or purge them with `ferry-tools dlq`")
            }
            let cursor = try context.txn.cursor(context.databases.records)
            while state.storedBytes + state.deadBytes + needed > limit, let entry = try cursor.first() {
                let events = (try? QueueRecord.header(of: entry.value)).map { UInt64($0.eventCount) } ?? 0
                state.storedBytes.subtractClamped(UInt64(entry.value.count))
                state.storedEvents.subtractClamped(events)
                state.droppedRecords += 1
                state.droppedEvents += events
                try cursor.deleteCurrent()
            }
            if try context.txn.entries(context.databases.records) == 0 {
                state.storedBytes = 0
                state.storedEvents = 0
            }
            context.state = state
        }
    }

    // MARK: Lease, acknowledge, release

    /// Hands out the next records, oldest first, without blocking writers: a remembered batch waiting to
    /// go again (whole and by itself, whatever the limits), else released records, then records not leased
    /// yet. Returns an empty lease when there is nothing new.
    ///
    /// At most `maxRecords` records, at most `maxBytes` stored bytes and at most `maxEvents` events, unless
    /// the first record alone is larger. A record that fails its check is returned in `corrupt` with its sequence number and logged;
    /// the caller moves it to `dead` (or acknowledges it) like any leased record.
    ///
    /// With `freshIfBacklogOlderThan`, when the oldest record not leased yet was made that long before the
    /// newest, this lease takes from the newest end instead (the fresh lane, ascending within the lease):
    /// records appended after a backlog formed need not wait for all of it. The lane then grows forward
    /// with later such leases, and the oldest-first leases step over it.
    public func lease(maxRecords: Int = 256, maxBytes: Int = 4 << 20, maxEvents: Int = .max,
                      freshIfBacklogOlderThan freshAge: Duration? = nil) throws(QueueError) -> Lease {
        guard !closed.load(ordering: .acquiring) else { throw QueueError.closedError }
        let limits = LeasePlanner.Limits(maxRecords: maxRecords, maxBytes: maxBytes, maxEvents: maxEvents, freshIfBacklogOlderThan: freshAge)
        let page = try leases.withLock { (planner: inout LeasePlanner) throws(QueueError) -> RecordPage in
            // Planned on a copy: a failed read leaves the planner as it was.
            var planned = planner
            let page = try read { txn throws in
                var source = try RecordCursorSource(txn, records: databases.records)
                var page = RecordPage(records: [], corrupt: [], nextSequence: 0)
                for entry in try planned.plan(&source, limits) { page.add(sequence: entry.sequence, value: entry.value) }
                return page
            }
            planner = planned
            return page
        }
        for bad in page.corrupt {
            logger.error("queue record is damaged", metadata: [
                "ferry.queue.sequence": "\(bad.sequence)", "ferry.queue.error": "\(bad.error)",
                "ferry.queue.path": "\(path)",
            ])
        }
        return Lease(records: page.records, corrupt: page.corrupt)
    }

    /// Gives leased records back: they are leased again, before newer ones (a remembered batch whole,
    /// as it was). For a delivery that failed and will not be retried by its caller.
    public func release(_ sequences: some Sequence<UInt64>) {
        leases.withLock { $0.release(sequences) }
    }

    /// Gives every record of `lease` back (see `release(_:)`).
    public func release(_ lease: Lease) { release(lease.sequences) }

    /// Deletes delivered records, durably: returns after the commit. Records already gone (dropped,
    /// acknowledged before) are skipped. Returns how many records were deleted.
    @discardableResult
    public func acknowledge(_ sequences: [UInt64]) async throws(QueueError) -> Int {
        let batches = leases.withLock { $0.batches(holding: sequences) }
        let (deleted, finished) = try await perform(weight: 0, freesSpace: true) { context throws -> (Int, [ClosedRange<UInt64>]) in
            var deleted = 0
            for sequence in sequences {
                try withSequenceKey(sequence) { key in
                    guard let value = try context.txn.get(context.databases.records, key) else { return }
                    let events = (try? QueueRecord.header(of: value)).map { UInt64($0.eventCount) } ?? 0
                    context.state.storedBytes.subtractClamped(UInt64(value.count))
                    context.state.storedEvents.subtractClamped(events)
                    context.state.deliveredRecords += 1
                    context.state.deliveredEvents += events
                    try context.txn.delete(context.databases.records, key)
                    deleted += 1
                }
            }
            try Self.settleIfEmpty(&context)
            return (deleted, try Self.forgetFinished(batches, &context))
        }
        leases.withLock { state in finished.forEach { state.forget($0) } }
        return deleted
    }

    /// Deletes every record of `lease` (see `acknowledge(_:)`).
    @discardableResult
    public func acknowledge(_ lease: Lease) async throws(QueueError) -> Int {
        try await acknowledge(lease.sequences)
    }

    // MARK: Dead records

    /// Moves records to `dead` with `reason` (a downstream rejected them permanently, or they are damaged).
    /// They keep their sequence number there. Returns how many were moved.
    @discardableResult
    public func moveToDead(_ sequences: [UInt64], reason: String) async throws(QueueError) -> Int {
        let reasonBytes = Array(reason.utf8.prefix(DeadRecord.maxReasonBytes))
        let batches = leases.withLock { $0.batches(holding: sequences) }
        let (moved, finished) = try await perform(weight: 0, freesSpace: true) { context throws -> (Int, [ClosedRange<UInt64>]) in
            var moved = 0
            for sequence in sequences {
                try withSequenceKey(sequence) { key in
                    guard let found = try context.txn.get(context.databases.records, key) else { return }
                    let value = [UInt8](found)  // copied: the put below may move pages
                    let events = value.withUnsafeBytes { (try? QueueRecord.header(of: $0)).map { UInt64($0.eventCount) } ?? 0 }
                    let dead = DeadRecord.encode(reason: reasonBytes, buriedAt: context.now, record: value)
                    try dead.withUnsafeBytes { try context.txn.put(context.databases.dead, key, $0) }
                    try context.txn.delete(context.databases.records, key)
                    context.state.storedBytes.subtractClamped(UInt64(value.count))
                    context.state.storedEvents.subtractClamped(events)
                    context.state.deadBytes += UInt64(value.count)
                    context.state.deadEvents += events
                    context.state.deadRecordsTotal += 1
                    context.state.deadEventsTotal += events
                    moved += 1
                }
            }
            try Self.settleIfEmpty(&context)
            return (moved, try Self.forgetFinished(batches, &context))
        }
        leases.withLock { state in finished.forEach { state.forget($0) } }
        return moved
    }

    /// Moves dead records back to the queue under new sequence numbers (so they are delivered after what
    /// is waiting now). `nil` requeues every dead record. Returns how many were requeued.
    @discardableResult
    public func requeueDead(_ sequences: [UInt64]? = nil) async throws(QueueError) -> Int {
        try await perform(weight: 0) { context throws -> Int in
            try Self.forEachDead(&context, sequences) { context, key, value in
                let record = try DeadRecord.recordBytes(of: value)
                let events = (try? QueueRecord.header(of: record)).map { UInt64($0.eventCount) } ?? 0
                let copy = [UInt8](record)
                try withSequenceKey(context.state.nextSequence) { newKey in
                    try copy.withUnsafeBytes { try context.txn.put(context.databases.records, newKey, $0, append: true) }
                }
                context.state.nextSequence += 1
                context.state.storedBytes += UInt64(copy.count)
                context.state.storedEvents += events
                context.state.deadBytes.subtractClamped(UInt64(copy.count))
                context.state.deadEvents.subtractClamped(events)
                context.state.requeuedEvents += events
            }
        }
    }

    /// Deletes dead records for good. `nil` purges every dead record. Returns how many were deleted.
    @discardableResult
    public func purgeDead(_ sequences: [UInt64]? = nil) async throws(QueueError) -> Int {
        try await perform(weight: 0, freesSpace: true) { context throws -> Int in
            try Self.forEachDead(&context, sequences) { context, _, value in
                let record = try DeadRecord.recordBytes(of: value)
                let events = (try? QueueRecord.header(of: record)).map { UInt64($0.eventCount) } ?? 0
                context.state.deadBytes.subtractClamped(UInt64(record.count))
                context.state.deadEvents.subtractClamped(events)
                context.state.purgedEvents += events
            }
        }
    }

    /// Runs `body` for each dead record named (or all), then deletes it from `dead`. Returns the count.
    private static func forEachDead(_ context: inout WriteContext, _ sequences: [UInt64]?,
                                    _ body: (inout WriteContext, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        let keys: [UInt64]
        if let sequences {
            keys = sequences
        } else {
            var all: [UInt64] = []
            let cursor = try context.txn.cursor(context.databases.dead)
            var entry = try cursor.first()
            while let current = entry, let sequence = sequence(fromKey: current.key) {
                all.append(sequence)
                entry = try cursor.next()
            }
            keys = all
        }
        var count = 0
        for sequence in keys {
            try withSequenceKey(sequence) { key in
                guard let value = try context.txn.get(context.databases.dead, key) else { return }
                let copy = [UInt8](value)
                try copy.withUnsafeBytes { try body(&context, key, $0) }
                try context.txn.delete(context.databases.dead, key)
                count += 1
            }
        }
        if try context.txn.entries(context.databases.dead) == 0 {
            context.state.deadBytes = 0
            context.state.deadEvents = 0
        }
        return count
    }

    /// When `records` is empty its sizes are zero, whatever a damaged header made the counters believe.
    private static func settleIfEmpty(_ context: inout WriteContext) throws {
        if try context.txn.entries(context.databases.records) == 0 {
            context.state.storedBytes = 0
            context.state.storedEvents = 0
        }
    }

    /// Dead records from `sequence` on, at most `maxRecords`, oldest first.
    public func deadRecords(from sequence: UInt64 = 0, maxRecords: Int = 100) throws(QueueError) -> [DeadRecord] {
        try read { txn in
            var result: [DeadRecord] = []
            let cursor = try txn.cursor(databases.dead)
            var entry = try withSequenceKey(sequence) { try cursor.seek($0) }
            while let current = entry, result.count < maxRecords, let key = FerryQueue.sequence(fromKey: current.key) {
                result.append(DeadRecord(sequence: key, value: current.value))
                entry = try cursor.next()
            }
            return result
        }
    }

    // MARK: Reading without leasing

    /// Reads records from `sequence` on without leasing them (for tools and tests): at most `maxRecords`.
    public func peek(from sequence: UInt64 = 0, maxRecords: Int = 100) throws(QueueError) -> RecordPage {
        try read { txn in
            var page = RecordPage(records: [], corrupt: [], nextSequence: sequence)
            let cursor = try txn.cursor(databases.records)
            var entry = try withSequenceKey(sequence) { try cursor.seek($0) }
            while let current = entry, page.count < maxRecords, let key = FerryQueue.sequence(fromKey: current.key) {
                page.add(sequence: key, value: current.value)
                page.nextSequence = key + 1
                entry = try cursor.next()
            }
            return page
        }
    }

    /// The stored input positions whose key starts with `prefix`, in key order: what an input reads at
    /// start to go on where its last stored events ended.
    public func positions(withPrefix prefix: [UInt8]) throws(QueueError) -> [InputPosition] {
        try read { txn in
            guard let table = databases.positions else { return [] }
            var found: [InputPosition] = []
            let cursor = try txn.cursor(table)
            var entry = try prefix.withUnsafeBytes { try $0.isEmpty ? cursor.first() : cursor.seek($0) }
            while let current = entry, current.key.count >= prefix.count,
                  prefix.withUnsafeBytes({ $0.isEmpty || memcmp($0.baseAddress!, current.key.baseAddress!, prefix.count) == 0 }) {
                found.append(InputPosition(key: Array(current.key), value: Array(current.value)))
                entry = try cursor.next()
            }
            return found
        }
    }

    /// Returns when an append (or a requeue) commits, or after `timeout`, or when the task is cancelled.
    /// For consumers that found nothing to lease: wait here instead of polling.
    public func waitForAppend(timeout: Duration) async {
        await appendWaiters.wait(timeout: timeout)
    }

    // MARK: Stats

    /// Sizes and counters as of the last commit. O(1): a copy of what the writer published.
    public var stats: QueueStats {
        if mode == .readOnly, let fresh = try? readStats() { return fresh }
        var stats = snapshot.value.withLock { $0 }
        if !closed.load(ordering: .acquiring) {
            let info = environment.info()
            stats.mapSize = info.mapSize
            stats.mapUsedBytes = (info.lastPage + 1) * info.pageSize
        }
        return stats
    }

    /// Stats read from the last commit, by whichever process made it: what a read-only tool shows.
    /// O(1): `meta`'s state, two cursor moves, two page counts.
    public func readStats() throws(QueueError) -> QueueStats {
        try read { txn in
            guard let value = try Array("state".utf8).withUnsafeBytes({ try txn.get(databases.meta, $0) }),
                  let state = QueueState(decoding: value)
            else { throw QueueError(.notAQueue, "the meta table of \(path) has no readable state; run `ferry-tools verify --data-dir \(path)`") }
            return try Queue.stats(in: txn, databases: databases, state: state, environment: environment, maxBytes: configuration.maxBytes)
        }
    }

    // MARK: Internals

    /// Runs `body` on the writer thread inside the next group transaction; returns its result once durable.
    func perform<T: Sendable>(weight: Int, freesSpace: Bool = false,
                                      _ body: @escaping @Sendable (inout WriteContext) throws -> T) async throws(QueueError) -> T {
        guard !closed.load(ordering: .acquiring) else { throw QueueError.closedError }
        guard let writer else {
            throw QueueError(.readOnly, "\(path) is open read-only (an agent may be running); stop the agent to change the queue")
        }
        let result: Result<T, QueueError> = await withCheckedContinuation { continuation in
            let operation = WriteOperation(
                weight: weight,
                apply: { context in
                    let value = try body(&context)
                    return { continuation.resume(returning: .success(value)) }
                },
                fail: { continuation.resume(returning: .failure($0)) },
                freesSpace: freesSpace
            )
            if !writer.submit(operation) { continuation.resume(returning: .failure(QueueError.closedError)) }
        }
        return try result.get()
    }

    /// A read transaction for the length of `body`, with LMDB errors mapped.
    func read<R>(_ body: (Transaction) throws -> R) throws(QueueError) -> R {
        guard !closed.load(ordering: .acquiring) else { throw QueueError.closedError }
        do {
            return try environment.read(body)
        } catch let error as QueueError {
            throw error
        } catch let error as LMDBError {
            throw QueueError.reading(error, path: path)
        } catch {
            throw QueueError(.environmentFailed, "queue read failed in \(path): \(error)")
        }
    }
}

/// The named databases of a queue environment.
struct Databases: Sendable {
    var records: Database
    var dead: Database
    var meta: Database
    var seen: Database
    var seenByTime: Database
    /// Remembered batches: first sequence → last sequence. nil only in a read-only open of a queue made
    /// before the table existed.
    var batches: Database?
    /// The inputs' read positions (`InputPosition`), written with the events read up to them. nil only in
    /// a read-only open of a queue made before the table existed.
    var positions: Database?
}

/// The stats the writer published last; shared between the writer and readers of `Queue.stats`.
final class StatsSnapshot: Sendable {
    let value: Mutex<QueueStats>
    init(_ stats: QueueStats) { value = Mutex(stats) }
}

/// Tasks waiting for the next append, resumed by the writer after a commit that stored records.
final class AppendWaiters: Sendable {
    private let state = Mutex<(next: UInt64, waiting: [UInt64: CheckedContinuation<Void, Never>], ended: Set<UInt64>)>((0, [:], []))

    func resumeAll() {
        let waiting = state.withLock { state in
            defer { state.waiting = [:] }
            return state.waiting
        }
        for continuation in waiting.values { continuation.resume() }
    }

    /// Ends waiter `id` early (timeout or cancellation); safe to call before it started waiting.
    private func end(_ id: UInt64) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiting = state.waiting.removeValue(forKey: id) { return waiting }
            state.ended.insert(id)
            return nil
        }
        continuation?.resume()
    }

    func wait(timeout: Duration) async {
        let id = state.withLock { state in
            defer { state.next += 1 }
            return state.next
        }
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            end(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let endedAlready = state.withLock { state -> Bool in
                    if state.ended.remove(id) != nil { return true }
                    state.waiting[id] = continuation
                    return false
                }
                if endedAlready { continuation.resume() }
            }
        } onCancel: {
            end(id)
        }
        timer.cancel()
        // The timer may have ended a waiter that resumeAll() had already resumed: forget that mark.
        _ = state.withLock { $0.ended.remove(id) }
    }
}


extension Array where Element: Hashable {
    /// Removes adjacent repeats from a sorted array.
    func uniqued() -> [Element] {
        var result: [Element] = []
        result.reserveCapacity(count)
        for element in self where result.last != element { result.append(element) }
        return result
    }
}
