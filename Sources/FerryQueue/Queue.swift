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
    public static let formatVersion: UInt32 = 2
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
    /// Each consumer's lease planner, by consumer id.
    let leases: Mutex<[UInt32: LeasePlanner]>
    /// The consumers' ids by name, as of the open (consumers change only at an open).
    let consumerIDs: [(name: String, id: UInt32)]
    private let closed = Atomic<Bool>(false)
    private let appendWaiters: AppendWaiters

    private init(path: String, configuration: QueueConfiguration, agentID: String, environment: Environment,
                 databases: Databases, state: QueueState, consumers: [ConsumerState], stats: QueueStats,
                 remembered: [UInt32: [ClosedRange<UInt64>]], lock: DirectoryLock?, mode: AccessMode, logger: Logger,
                 clock: @escaping @Sendable () -> Int64) {
        self.path = path
        self.consumerIDs = consumers.map { ($0.name, $0.id) }
        var planners: [UInt32: LeasePlanner] = [:]
        for consumer in consumers {
            planners[consumer.id] = LeasePlanner(remembered: remembered[consumer.id] ?? [], from: consumer.watermark)
        }
        self.leases = Mutex(planners)
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
                             state: state, consumers: consumers, logger: logger, clock: clock, publish: { stats in
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
        try open(at: path, configuration: configuration, mode: mode, logger: logger, clock: nil)
    }

    /// `open(at:configuration:mode:logger:)` with the queue's clock (ms since the Unix epoch, for `seen`
    /// and dead records) given, so that tests can step it. Without one, the process's `RecordTime`, raised
    /// to the newest time the queue holds.
    package static func open(at path: String, configuration: QueueConfiguration = QueueConfiguration(),
                             mode: AccessMode = .exclusive, logger: Logger,
                             clock: (@Sendable () -> Int64)?) throws(QueueError) -> Queue {
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

        let opened: Initialized
        let stats: QueueStats
        var remembered: [UInt32: [ClosedRange<UInt64>]] = [:]
        do {
            let txn = try environment.beginTransaction(readOnly: readOnly)
            do {
                opened = try initialize(txn, path: path, create: !readOnly, consumers: configuration.consumers)
                stats = try Queue.stats(in: txn, databases: opened.databases, state: opened.state, consumers: opened.consumers,
                                        environment: environment, maxBytes: configuration.maxBytes)
                if !readOnly {
                    for consumer in opened.consumers {
                        remembered[consumer.id] = try rememberedBatches(txn, databases: opened.databases, consumer: consumer)
                    }
                }
                if clock == nil { RecordTime.raise(toAtLeast: try raisedTime(newestStored: newestStoredTime(txn, databases: opened.databases))) }
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
        if opened.formatBefore < formatVersion && !readOnly {
            logger.notice("queue upgraded to this Ferry's format: its records, dead records and remembered batches are now the output default's", metadata: [
                "ferry.queue.path": "\(path)", "ferry.queue.format_before": "\(opened.formatBefore)", "ferry.queue.format": "\(formatVersion)",
            ])
        }
        for removed in opened.removed {
            logger.warning("an output that is no longer configured lost its place in the queue; it will never get the events it had not delivered", metadata: [
                "ferry.output": "\(removed.name)", "ferry.output.undelivered_events": "\(removed.pendingEvents)", "ferry.queue.path": "\(path)",
            ])
        }
        logger.info("queue opened", metadata: [
            "ferry.queue.path": "\(path)", "ferry.queue.records": "\(stats.records)",
            "ferry.queue.events": "\(stats.events)", "ferry.queue.bytes": "\(stats.bytes)",
            "ferry.queue.stale_readers_cleared": "\(cleared)", "ferry.queue.remembered_batches": "\(remembered.values.reduce(0) { $0 + $1.count })",
            "ferry.queue.outputs": "\(opened.consumers.map(\.name).joined(separator: ","))",
        ])
        let queue = Queue(path: path, configuration: configuration, agentID: opened.agentID, environment: environment,
                          databases: opened.databases, state: opened.state, consumers: opened.consumers, stats: stats, remembered: remembered,
                          lock: lock, mode: mode, logger: logger, clock: clock ?? { RecordTime.now() })
        // Records only a removed output still held are freed now, not at the next append.
        if !opened.removed.isEmpty { _ = queue.writer?.submit(Writer.housekeepingOnly) }
        return queue
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
        let result: Result<AppendReceipt, QueueError> = await withCheckedContinuation { continuation in
            append(batch, batchID: batchID, positions: positions) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// `append(_:batchID:positions:)` for a caller that is not a task (a NIO channel handler answering on
    /// its event loop): `completion` runs once, on the writer thread after the fsync (or at once on a
    /// refusal), and must not block. Nothing is stored when it gets a failure.
    public func append(_ batch: EventBatch, batchID: String? = nil, positions: [InputPosition] = [],
                       completion: @escaping @Sendable (Result<AppendReceipt, QueueError>) -> Void) {
        guard !batch.records.isEmpty || !positions.isEmpty else {
            return completion(.failure(QueueError(.invalidArgument, "an empty batch cannot be appended; send at least one event")))
        }
        for position in positions where position.key.isEmpty || position.key.count > 400 {
            return completion(.failure(QueueError(.invalidArgument, "an input position key must be 1 to 400 bytes, got \(position.key.count)")))
        }
        if let batchID, batchID.utf8.count > 400 {
            return completion(.failure(QueueError(.invalidArgument, "batch id is \(batchID.utf8.count) bytes, more than 400; use a shorter Ferry-Batch id")))
        }
        // Encoding happens here, on the caller's thread, so that the writer only copies bytes.
        let values = batch.records.map { (bytes: $0.encoded(), events: UInt64($0.eventCount)) }
        let total = values.reduce(0) { $0 + $1.bytes.readableBytes }
        let events = values.reduce(0) { $0 + $1.events }
        let seenKey = batchID.map { Array($0.utf8) }
        submit(weight: total, { context throws -> AppendReceipt in
            try Self.applyAppend(&context, values: values, totalBytes: total, events: events, seenKey: seenKey, positions: positions)
        }, completion: completion)
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
        for c in context.consumers.indices {
            context.consumers[c].pendingEvents += events
            context.consumers[c].pendingBytes += UInt64(totalBytes)
            context.consumers[c].dirty = true
        }
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

    /// Applies the capacity policy for an append of `bytes`: throws `.full` / `.batchTooLarge`, or makes
    /// room: first by moving lagging consumers (`when_lagging: drop`) past records every other consumer is
    /// done with, then, with `when_full: drop_oldest`, by dropping the oldest records for everyone.
    private static func makeRoom(_ context: inout WriteContext, for bytes: Int) throws {
        let limit = UInt64(context.configuration.maxBytes)
        let needed = UInt64(bytes)
        guard needed <= limit else {
            throw QueueError(.batchTooLarge, "a batch of \(bytes) bytes can never fit in queue.max_bytes = \(limit); send smaller requests or raise queue.max_bytes")
        }
        try refuseForLowDisk(&context)
        try refuseForBlockingLag(&context)
        let fits: (QueueState) -> Bool = { $0.storedBytes + $0.deadBytes + needed <= limit }
        guard !fits(context.state) else { return }
        if try dropForLaggingConsumers(&context, fits: fits) { return }
        let state = context.state
        switch context.configuration.whenFull {
        case .block:
            let holder = context.consumers.max { $0.pendingBytes < $1.pendingBytes }.map { " (output \($0.name) has \($0.pendingBytes) bytes to deliver)" } ?? ""
            throw QueueError(.full, "queue is full: \(state.storedBytes + state.deadBytes) of queue.max_bytes = \(limit) bytes stored\(holder); retry when the outputs have caught up, or raise queue.max_bytes or set when_full: drop_oldest")
        case .dropOldest:
            guard state.deadBytes + needed <= limit else {
                throw QueueError(.full, "queue is full of dead records (\(state.deadBytes) bytes of \(limit)); requeue or purge them with `ferry-tools dlq`")
            }
            let cursor = try context.txn.cursor(context.databases.records)
            while !fits(context.state), let entry = try cursor.first(), let sequence = FerryQueue.sequence(fromKey: entry.key) {
                try drop(&context, sequence)
            }
            if try context.txn.entries(context.databases.records) == 0 {
                context.state.storedBytes = 0
                context.state.storedEvents = 0
            }
            for c in context.consumers.indices { try advanceWatermark(&context, consumer: c) }
        }
    }

    /// `queue.min_free`: while the file system holding the queue has less free than that, appends are
    /// refused. Dropping records would not help: LMDB keeps its file's size and reuses the freed pages.
    /// Asked once per group: nothing reaches the disk before the group's commit, so every append of a group
    /// sees the same free space. A file system that cannot be asked (`statvfs` fails) leaves the decision
    /// to LMDB's own ENOSPC.
    private static func refuseForLowDisk(_ context: inout WriteContext) throws {
        guard context.configuration.minFree != .bytes(0) else { return }
        if case .notAsked = context.disk {
            var fs = statvfs()
            if statvfs(context.path, &fs) == 0 {
                context.disk = .known(free: UInt64(fs.f_bavail) * UInt64(fs.f_frsize),
                                      floor: context.configuration.minFree.bytes(ofTotal: UInt64(fs.f_blocks) * UInt64(fs.f_frsize)))
            } else {
                context.disk = .unknown
            }
        }
        guard case .known(let free, let floor) = context.disk, free < floor else { return }
        throw QueueError(.full, "the file system of \(context.path) has \(free) bytes free, less than queue.min_free (\(floor) bytes); events are refused until there is room: free disk space there, or lower queue.min_free")
    }

    /// `when_lagging: block` with a lag bound: while such a consumer is past its bound, appends are refused.
    private static func refuseForBlockingLag(_ context: inout WriteContext) throws {
        for c in context.consumers.indices where context.consumers[c].settings.whenLagging == .block {
            let consumer = context.consumers[c]
            if let bound = consumer.settings.maxLagBytes, consumer.pendingBytes > UInt64(bound) {
                throw QueueError(.full, "output \(consumer.name) has \(consumer.pendingBytes) bytes to deliver, more than its max_lag_bytes = \(bound) (when_lagging: block); events are refused until it catches up, or set its when_lagging: drop")
            }
            if let bound = consumer.settings.maxLagAgeMilliseconds, let oldest = try oldestPending(&context, consumer: c),
               let createdAt = oldest.createdAt, context.now - createdAt > bound {
                throw QueueError(.full, "output \(consumer.name) has not delivered a record made \((context.now - createdAt) / 1000) s ago, older than its max_lag_age (when_lagging: block); events are refused until it catches up, or set its when_lagging: drop")
            }
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
        try defaultConsumer.lease(maxRecords: maxRecords, maxBytes: maxBytes, maxEvents: maxEvents, freshIfBacklogOlderThan: freshAge)
    }

    /// The lease of consumer `id`: its planner, run on a copy over the records it still has to settle.
    func lease(consumer id: UInt32, _ limits: LeasePlanner.Limits) throws(QueueError) -> Lease {
        guard !closed.load(ordering: .acquiring) else { throw QueueError.closedError }
        let page = try leases.withLock { (planners: inout [UInt32: LeasePlanner]) throws(QueueError) -> RecordPage in
            guard var planned = planners[id] else {
                throw QueueError(.invalidArgument, "the queue has no output with id \(id); it was removed at the last open")
            }
            // Planned on a copy: a failed read leaves the planner as it was.
            let page = try read { txn throws in
                let (watermark, settled) = try committedProgress(txn, consumer: id)
                var source = PendingRecordSource(base: try RecordCursorSource(txn, records: databases.records), watermark: watermark, settled: settled)
                var page = RecordPage(records: [], corrupt: [], nextSequence: 0)
                for entry in try planned.plan(&source, limits) { page.add(sequence: entry.sequence, value: entry.value) }
                return page
            }
            planners[id] = planned
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

    /// A consumer's watermark and settled ranges as committed, read in `txn`.
    func committedProgress(_ txn: Transaction, consumer id: UInt32) throws -> (UInt64, SequenceRanges) {
        guard let outputs = databases.outputs, let name = consumerIDs.first(where: { $0.id == id })?.name else { return (0, SequenceRanges()) }
        guard let row = try Array(name.utf8).withUnsafeBytes({ try txn.get(outputs, $0) }),
              let consumer = ConsumerState(name: name, decoding: row, settings: ConsumerSettings(name: name))
        else { return (0, SequenceRanges()) }
        return (consumer.watermark, try Self.settledRanges(txn, databases: databases, consumer: id))
    }

    /// Gives leased records of the default consumer back (see `Consumer.release`).
    public func release(_ sequences: some Sequence<UInt64>) {
        defaultConsumer.release(sequences)
    }

    /// Gives every record of `lease` back (see `release(_:)`).
    public func release(_ lease: Lease) { release(lease.sequences) }

    /// Settles delivered records for the default consumer, durably (see `Consumer.acknowledge`).
    @discardableResult
    public func acknowledge(_ sequences: [UInt64]) async throws(QueueError) -> Int {
        try await defaultConsumer.acknowledge(sequences)
    }

    /// Settles every record of `lease` for the default consumer (see `acknowledge(_:)`).
    @discardableResult
    public func acknowledge(_ lease: Lease) async throws(QueueError) -> Int {
        try await acknowledge(lease.sequences)
    }

    /// Settles `sequences` for consumer `id` in the next group commit; forgets the consumer's remembered
    /// batches none of whose records it still has to settle.
    func settle(consumer id: UInt32, _ sequences: [UInt64], as how: Settlement) async throws(QueueError) -> Int {
        let batches = leases.withLock { $0[id]?.batches(holding: sequences) ?? [] }
        let sorted = sequences.sorted()
        let (count, finished) = try await perform(weight: 0, freesSpace: true) { context throws -> (Int, [ClosedRange<UInt64>]) in
            guard let c = context.consumers.firstIndex(where: { $0.id == id }) else {
                throw QueueError(.invalidArgument, "the queue has no output with id \(id)")
            }
            let count = try Self.settle(&context, consumer: c, sorted, as: how)
            try Self.settleIfEmpty(&context)
            return (count, try Self.forgetFinished(batches, consumer: c, &context))
        }
        leases.withLock { planners in finished.forEach { planners[id]?.forget($0) } }
        return count
    }

    // MARK: Consumers

    /// The consumer (output) named `name`.
    public func consumer(named name: String) throws(QueueError) -> Consumer {
        guard let found = consumerIDs.first(where: { $0.name == name }) else {
            throw QueueError(.invalidArgument, "the queue has no output named \(name); it has \(consumerNames.joined(separator: ", "))")
        }
        return Consumer(queue: self, name: name, id: found.id)
    }

    /// The consumers' names, in the configured order.
    public var consumerNames: [String] { consumerIDs.map(\.name) }

    /// The consumer `default`, else the first configured: what the queue-level calls (`lease`,
    /// `acknowledge`, ...) act for. A queue always has at least one consumer.
    public var defaultConsumer: Consumer {
        let found = consumerIDs.first { $0.name == ConsumerSettings.defaultName } ?? consumerIDs[0]
        return Consumer(queue: self, name: found.name, id: found.id)
    }

    // MARK: Dead records

    /// Moves records to the default consumer's dead set with `reason` (see `Consumer.moveToDead`).
    @discardableResult
    public func moveToDead(_ sequences: [UInt64], reason: String) async throws(QueueError) -> Int {
        try await defaultConsumer.moveToDead(sequences, reason: reason)
    }

    /// Delivers dead records again, under new sequence numbers (so they come after what is waiting now), to
    /// the consumers that buried them: only to `output` when it is given, else to every consumer that did.
    /// The others never see the copy. `nil` sequences requeue every dead record (of `output`). Returns how
    /// many records were requeued.
    @discardableResult
    public func requeueDead(_ sequences: [UInt64]? = nil, output: String? = nil) async throws(QueueError) -> Int {
        let only = try output.map { name throws(QueueError) in try consumer(named: name).id }
        return try await perform(weight: 0) { context throws -> Int in
            var count = 0
            for (sequence, buriedBy) in try Self.deadSequences(&context, sequences, only: only) {
                guard let record = try Self.deadRecordBytes(&context, sequence) else { continue }
                let events = record.withUnsafeBytes { (try? QueueRecord.header(of: $0)).map { UInt64($0.eventCount) } ?? 0 }
                let newSequence = context.state.nextSequence
                try withSequenceKey(newSequence) { key in
                    try record.withUnsafeBytes { try context.txn.put(context.databases.records, key, $0, append: true) }
                }
                context.state.nextSequence += 1
                context.state.storedBytes += UInt64(record.count)
                context.state.storedEvents += events
                context.state.requeuedEvents += events
                for c in context.consumers.indices {
                    if buriedBy.contains(context.consumers[c].id) {
                        context.consumers[c].pendingEvents += events
                        context.consumers[c].pendingBytes += UInt64(record.count)
                    } else {
                        context.consumers[c].settled.insert(newSequence...newSequence)  // not for it
                    }
                    context.consumers[c].dirty = true
                }
                try Self.unmark(&context, sequence, consumers: buriedBy)
                count += 1
            }
            try Self.sweepUnmarkedDead(&context, purged: false)
            return count
        }
    }

    /// Deletes dead records for good: `output`'s marks only, or every consumer's; a dead record no
    /// consumer marks any more is deleted. `nil` sequences purge every dead record (of `output`). Returns how
    /// many records were purged.
    @discardableResult
    public func purgeDead(_ sequences: [UInt64]? = nil, output: String? = nil) async throws(QueueError) -> Int {
        let only = try output.map { name throws(QueueError) in try consumer(named: name).id }
        return try await perform(weight: 0, freesSpace: true) { context throws -> Int in
            var count = 0
            for (sequence, buriedBy) in try Self.deadSequences(&context, sequences, only: only) {
                try Self.unmark(&context, sequence, consumers: buriedBy)
                count += 1
            }
            try Self.sweepUnmarkedDead(&context, purged: true)
            return count
        }
    }

    /// The dead sequences named (or all), each with the ids of the consumers (all, or `only`) that buried it.
    private static func deadSequences(_ context: inout WriteContext, _ sequences: [UInt64]?, only: UInt32?) throws -> [(UInt64, Set<UInt32>)] {
        guard let marks = context.databases.deadMarks else { return [] }
        var found: [UInt64: Set<UInt32>] = [:]
        for consumer in context.consumers where only == nil || consumer.id == only {
            if let sequences {
                for sequence in sequences where try withConsumerKey(consumer.id, sequence, { try context.txn.get(marks, $0) }) != nil {
                    found[sequence, default: []].insert(consumer.id)
                }
            } else {
                let cursor = try context.txn.cursor(marks)
                var entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
                while let current = entry, let key = consumerKey(current.key), key.id == consumer.id {
                    found[key.sequence, default: []].insert(consumer.id)
                    entry = try cursor.next()
                }
            }
        }
        return found.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The bytes of a buried record: in `records` while a consumer still needs it, else in `dead`.
    private static func deadRecordBytes(_ context: inout WriteContext, _ sequence: UInt64) throws -> [UInt8]? {
        try withSequenceKey(sequence) { key in
            if let value = try context.txn.get(context.databases.records, key) { return [UInt8](value) }
            guard let value = try context.txn.get(context.databases.dead, key) else { return nil }
            return [UInt8](try DeadRecord.recordBytes(of: value))
        }
    }

    /// Removes the dead marks of `consumers` on `sequence`.
    private static func unmark(_ context: inout WriteContext, _ sequence: UInt64, consumers: Set<UInt32>) throws {
        guard let marks = context.databases.deadMarks else { return }
        for c in context.consumers.indices where consumers.contains(context.consumers[c].id) {
            if try withConsumerKey(context.consumers[c].id, sequence, { try context.txn.delete(marks, $0) }) {
                context.consumers[c].deadRecords.subtractClamped(1)
                context.consumers[c].dirty = true
            }
        }
    }

    /// Deletes the records of `dead` that no consumer marks any more (purged: counted as purged events).
    private static func sweepUnmarkedDead(_ context: inout WriteContext, purged: Bool) throws {
        guard let marks = context.databases.deadMarks else { return }
        let cursor = try context.txn.cursor(context.databases.dead)
        var entry = try cursor.first()
        var unmarked: [UInt64] = []
        while let current = entry, let sequence = FerryQueue.sequence(fromKey: current.key) {
            var marked = false
            for consumer in context.consumers where !marked {
                marked = try withConsumerKey(consumer.id, sequence) { try context.txn.get(marks, $0) } != nil
            }
            if !marked { unmarked.append(sequence) }
            entry = try cursor.next()
        }
        for sequence in unmarked {
            try withSequenceKey(sequence) { key in
                guard let value = try context.txn.get(context.databases.dead, key) else { return }
                let record = try DeadRecord.recordBytes(of: value)
                let events = (try? QueueRecord.header(of: record)).map { UInt64($0.eventCount) } ?? 0
                context.state.deadBytes.subtractClamped(UInt64(record.count))
                context.state.deadEvents.subtractClamped(events)
                if purged { context.state.purgedEvents += events }
                _ = try context.txn.delete(context.databases.dead, key)
            }
        }
        if try context.txn.entries(context.databases.dead) == 0 {
            context.state.deadBytes = 0
            context.state.deadEvents = 0
        }
    }

    /// When `records` is empty its sizes are zero, whatever a damaged header made the counters believe.
    static func settleIfEmpty(_ context: inout WriteContext) throws {
        if try context.txn.entries(context.databases.records) == 0 {
            context.state.storedBytes = 0
            context.state.storedEvents = 0
            for c in context.consumers.indices where context.consumers[c].pendingBytes != 0 || context.consumers[c].pendingEvents != 0 {
                context.consumers[c].pendingBytes = 0
                context.consumers[c].pendingEvents = 0
                context.consumers[c].dirty = true
            }
        }
    }

    /// Dead records from `sequence` on, at most `maxRecords`, oldest first: those `output` buried, or
    /// those any consumer buried (a record still needed by another consumer is listed from `records`).
    public func deadRecords(from sequence: UInt64 = 0, maxRecords: Int = 100, output: String? = nil) throws(QueueError) -> [DeadRecord] {
        let only = try output.map { name throws(QueueError) in try consumer(named: name).id }
        return try read { txn in
            guard let marks = databases.deadMarks else {
                // A read-only open of a format-1 queue: `dead` is the default consumer's dead set.
                var result: [DeadRecord] = []
                let cursor = try txn.cursor(databases.dead)
                var entry = try withSequenceKey(sequence) { try cursor.seek($0) }
                while let current = entry, result.count < maxRecords, let key = FerryQueue.sequence(fromKey: current.key) {
                    result.append(DeadRecord(sequence: key, value: current.value, outputs: [ConsumerSettings.defaultName]))
                    entry = try cursor.next()
                }
                return result
            }
            // Every consumer's marks from `sequence`, merged by sequence.
            var buried: [UInt64: [(name: String, mark: [UInt8])]] = [:]
            for (name, id) in consumerIDs where only == nil || id == only {
                let cursor = try txn.cursor(marks)
                var entry = try withConsumerKey(id, sequence) { try cursor.seek($0) }
                var taken = 0
                while let current = entry, taken < maxRecords, let key = consumerKey(current.key), key.id == id {
                    buried[key.sequence, default: []].append((name, [UInt8](current.value)))
                    taken += 1
                    entry = try cursor.next()
                }
            }
            var result: [DeadRecord] = []
            for (key, marksOfIt) in buried.sorted(by: { $0.key < $1.key }).prefix(maxRecords) {
                let (reason, time) = DeadRecord.decodeMark(marksOfIt[0].mark) ?? (Array("(damaged mark)".utf8), 0)
                let record: Result<QueueRecord, WireError>? = try withSequenceKey(key) { k in
                    if let value = try txn.get(databases.records, k) {
                        return Result { () throws(WireError) in try QueueRecord(validating: value) }
                    }
                    guard let value = try txn.get(databases.dead, k) else { return nil }
                    return DeadRecord(sequence: key, value: value).record
                }
                guard let record else { continue }
                result.append(DeadRecord(sequence: key, reason: String(decoding: reason, as: UTF8.self), movedAt: time, record: record,
                                         outputs: marksOfIt.map(\.name)))
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

    /// Returns when an append (or a requeue) commits, when a consumer gives leased records back, on
    /// `wakeWaiters()`, after `timeout`, or when the task is cancelled. For consumers that found nothing to
    /// lease: wait here instead of polling. Pass the `waitToken` read before looking for records: a wake-up
    /// since then (an append that committed while the consumer looked) ends the wait at once.
    public func waitForAppend(since token: UInt64? = nil, timeout: Duration) async {
        await appendWaiters.wait(since: token, timeout: timeout)
    }

    /// Read before looking for records, for `waitForAppend(since:timeout:)`.
    public var waitToken: UInt64 { appendWaiters.token }

    /// Ends every `waitForAppend` now.
    public func wakeWaiters() {
        appendWaiters.resumeAll()
    }

    // MARK: Stats

    /// Sizes and counters as of the last commit. O(1): a copy of what the writer published.
    public var stats: QueueStats {
        if mode == .readOnly, let fresh = try? readStats() { return fresh }
        var stats = snapshot.value.withLock { $0 }
        if let info = environment.infoIfOpen() {
            stats.mapSize = info.mapSize
            stats.mapUsedBytes = (info.lastPage + 1) * info.pageSize
        }
        return stats
    }

    /// The writer thread's heartbeat for the service watchdog (`FerryService.Watchdog`): groups finished,
    /// when the current group began, when the oldest waiting change was submitted (CLOCK_MONOTONIC ns).
    /// Lock-free. Nil for a read-only queue, which has no writer.
    package var writerHeartbeat: (finishedGroups: UInt64, busySince: UInt64?, waitingSince: UInt64?)? {
        writer?.heartbeat
    }

    /// Stats read from the last commit, by whichever process made it: what a read-only tool shows.
    /// O(1): `meta`'s state, two cursor moves, two page counts.
    public func readStats() throws(QueueError) -> QueueStats {
        try read { txn in
            guard let value = try Array("state".utf8).withUnsafeBytes({ try txn.get(databases.meta, $0) }),
                  let state = QueueState(decoding: value)
            else { throw QueueError(.notAQueue, "the meta table of \(path) has no readable state; run `ferry-tools verify --data-dir \(path)`") }
            let consumers = try Queue.loadConsumers(txn, databases: databases, state: state, configured: nil)
            return try Queue.stats(in: txn, databases: databases, state: state, consumers: consumers, environment: environment, maxBytes: configuration.maxBytes)
        }
    }

    // MARK: Internals

    /// Runs `body` on the writer thread inside the next group transaction; returns its result once durable.
    func perform<T: Sendable>(weight: Int, freesSpace: Bool = false,
                              _ body: @escaping @Sendable (inout WriteContext) throws -> T) async throws(QueueError) -> T {
        let result: Result<T, QueueError> = await withCheckedContinuation { continuation in
            submit(weight: weight, freesSpace: freesSpace, body) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Queues `body` for the writer's next group; `completion` gets its result once the group is durable, or
    /// the failure (at once when the queue is closed or read-only).
    func submit<T: Sendable>(weight: Int, freesSpace: Bool = false, _ body: @escaping @Sendable (inout WriteContext) throws -> T,
                             completion: @escaping @Sendable (Result<T, QueueError>) -> Void) {
        guard !closed.load(ordering: .acquiring) else { return completion(.failure(QueueError.closedError)) }
        guard let writer else {
            return completion(.failure(QueueError(.readOnly, "\(path) is open read-only (an agent may be running); stop the agent to change the queue")))
        }
        let operation = WriteOperation(
            weight: weight,
            apply: { context in
                let value = try body(&context)
                return { completion(.success(value)) }
            },
            fail: { completion(.failure($0)) },
            freesSpace: freesSpace
        )
        if !writer.submit(operation) { completion(.failure(QueueError.closedError)) }
    }

    /// A read transaction for the length of `body`, with LMDB errors mapped.
    func read<R>(_ body: (Transaction) throws -> R) throws(QueueError) -> R {
        guard !closed.load(ordering: .acquiring) else { throw QueueError.closedError }
        do {
            return try environment.read(body)
        } catch let error as QueueError {
            throw error
        } catch let error as LMDBError {
            throw error.isEnvironmentClosed ? QueueError.closedError : QueueError.reading(error, path: path)
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
    /// Consumers (outputs): name → `ConsumerState` row. The three consumer tables are nil only in a
    /// read-only open of a queue of format 1 (one consumer, `default`, is then implied).
    var outputs: Database?
    /// Each consumer's settled ranges above its watermark: id · first sequence → last sequence.
    var acks: Database?
    /// Each consumer's buried records: id · sequence → reason and time (`DeadRecord.encodeMark`).
    var deadMarks: Database?
}

/// The stats the writer published last; shared between the writer and readers of `Queue.stats`.
final class StatsSnapshot: Sendable {
    let value: Mutex<QueueStats>
    init(_ stats: QueueStats) { value = Mutex(stats) }
}

/// The waiters of `waitForAppend` (resumed by the writer after a commit that stored records, by
/// `Consumer.release` and by `Queue.wakeWaiters`), and a wake-up count: a waiter that read the count
/// before it looked for records (`token`) and finds it changed when it registers returns at once, so a
/// wake-up that falls between its look and its wait is not lost.
final class AppendWaiters: Sendable {
    private struct State {
        var next: UInt64 = 0
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var ended: Set<UInt64> = []
        var wakeUps: UInt64 = 0
    }
    private let state = Mutex(State())

    /// The wake-ups so far: read before looking for records, passed to `wait(since:timeout:)`.
    var token: UInt64 { state.withLock { $0.wakeUps } }

    func resumeAll() {
        let waiting = state.withLock { state in
            state.wakeUps &+= 1
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

    /// Returns on the next `resumeAll()`, at once if there was one since `token` (nil: from now on), after
    /// `timeout`, or when the task is cancelled.
    func wait(since token: UInt64?, timeout: Duration) async {
        let (id, since) = state.withLock { state in
            defer { state.next += 1 }
            return (state.next, token ?? state.wakeUps)
        }
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            end(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let endedAlready = state.withLock { state -> Bool in
                    if state.ended.remove(id) != nil || state.wakeUps != since { return true }
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
