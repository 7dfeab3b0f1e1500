import FerryWire
import Dispatch
import NIOConcurrencyHelpers
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A change applied by the writer thread inside a group transaction.
struct WriteOperation: Sendable {
    /// Record bytes the change adds, to bound the size of one group.
    let weight: Int
    /// Applies the change in `context` (a child transaction of the group, so a failure undoes this
    /// change alone) and returns what to run once the whole group is durable.
    let apply: @Sendable (inout WriteContext) throws -> @Sendable () -> Void
    /// Called instead when the change, or the group's commit, failed. Nothing of the change is stored.
    let fail: @Sendable (QueueError) -> Void
    /// True for deletes (acknowledge, purge): when LMDB's map is full, the writer grows it and retries
    /// them, so that a full queue can always be drained.
    var freesSpace = false
}

/// What an operation sees inside the writer's transaction. Lives on the writer thread only.
struct WriteContext {
    let txn: Transaction
    let databases: Databases
    let configuration: QueueConfiguration
    let path: String
    /// Time of the group, in ms since the Unix epoch, from the queue's clock (steady through wall-clock steps).
    let now: Int64
    var state: QueueState
    /// The consumers (outputs): cursors, ranges and counters; written at the group's end when changed.
    var consumers: [ConsumerState]
    /// `queue.min_free`'s look at the file system, taken once per group rather than once per append.
    var disk: DiskRoom = .notAsked
}

/// The free space of the queue's file system as `queue.min_free` sees it.
enum DiskRoom {
    case notAsked
    /// `statvfs` failed: LMDB's own ENOSPC decides.
    case unknown
    case known(free: UInt64, floor: UInt64)
}

/// The queue's single writer: a dedicated thread that drains pending changes, applies all of them in one
/// LMDB write transaction and commits it with one fsync (group commit), then resumes every waiter.
///
/// LMDB write transactions belong to the thread that began them, and a commit blocks on fsync: both are
/// reasons to keep them on this thread, off Swift's cooperative pool, and never across an `await`.
final class Writer: @unchecked Sendable {
    // Guarded by `condition`, whose value says whether the writer has something to do (changes pending,
    // or the stop).
    private var pending: [WriteOperation] = []
    private var stopping = false
    private let condition = ConditionLock(value: false)
    private let finished = DispatchSemaphore(value: 0)

    // The heartbeat (`heartbeat`), read by the service watchdog without taking `condition`, so that a
    // writer stuck while holding it cannot stall the reader. Times are CLOCK_MONOTONIC ns; 0 means none.
    private let finishedGroups = Atomic<UInt64>(0)
    private let busySince = Atomic<UInt64>(0)
    private let waitingSince = Atomic<UInt64>(0)

    // Owned by the writer thread once started.
    private var state: QueueState
    private var consumers: [ConsumerState]
    private var lastSeenPrune: Int64 = 0
    private var commits: UInt64 = 0
    private var operations: UInt64 = 0

    private let environment: Environment
    private let databases: Databases
    private let configuration: QueueConfiguration
    private let path: String
    private let logger: Logger
    /// The time of a group (ms since the Unix epoch): `RecordTime`, steady through wall-clock steps.
    private let clock: @Sendable () -> Int64
    private let publish: @Sendable (QueueStats) -> Void

    init(environment: Environment, databases: Databases, configuration: QueueConfiguration, path: String,
         state: QueueState, consumers: [ConsumerState], logger: Logger, clock: @escaping @Sendable () -> Int64, publish: @escaping @Sendable (QueueStats) -> Void) {
        self.environment = environment
        self.databases = databases
        self.configuration = configuration
        self.path = path
        self.state = state
        self.consumers = consumers
        self.logger = logger
        self.clock = clock
        self.publish = publish
    }

    /// An operation that changes nothing: its group runs the housekeeping (sweep, lag bounds).
    static let housekeepingOnly = WriteOperation(weight: 0, apply: { _ in {} }, fail: { _ in })

    func start() {
        OSThread.start(name: "ferry-writer") { [self] in run() }
    }

    /// Queues `operation` for the next group; false if the writer is stopping (the caller fails it).
    func submit(_ operation: WriteOperation) -> Bool {
        condition.lock()
        if stopping {
            condition.unlock()
            return false
        }
        if pending.isEmpty { waitingSince.store(writerMonotonicNanoseconds(), ordering: .relaxed) }
        pending.append(operation)
        condition.unlock(withValue: true)
        return true
    }

    /// Commits what is pending, then ends the thread. Returns once it has ended.
    func stop() {
        condition.lock()
        let first = !stopping
        stopping = true
        condition.unlock(withValue: true)
        if first { finished.wait() }
    }

    private func run() {
        while true {
            condition.lock(whenValue: true)
            if pending.isEmpty {  // nothing pending, so the stop
                condition.unlock()
                break
            }
            var count = 0
            var bytes = 0
            for operation in pending {
                if count > 0 && bytes + operation.weight > configuration.maxGroupBytes { break }
                bytes += operation.weight
                count += 1
            }
            let group = Array(pending.prefix(count))
            pending.removeFirst(count)
            let now = writerMonotonicNanoseconds()
            busySince.store(now, ordering: .relaxed)
            waitingSince.store(pending.isEmpty ? 0 : now, ordering: .relaxed)
            condition.unlock(withValue: !pending.isEmpty || stopping)
            commit(group)
            busySince.store(0, ordering: .relaxed)
            finishedGroups.add(1, ordering: .relaxed)
        }
        finished.signal()
    }

    /// Groups finished since the start, when the current group began (nil while waiting for work), and
    /// when the oldest change not yet taken was submitted (nil when none waits). Lock-free; CLOCK_MONOTONIC
    /// nanoseconds. A commit in a slow fsync shows as `busySince` in the past; a writer that no longer
    /// loops shows as a count that stops growing with `waitingSince` or `busySince` getting old.
    var heartbeat: (finishedGroups: UInt64, busySince: UInt64?, waitingSince: UInt64?) {
        let busy = busySince.load(ordering: .relaxed)
        let waiting = waitingSince.load(ordering: .relaxed)
        return (finishedGroups.load(ordering: .relaxed), busy == 0 ? nil : busy, waiting == 0 ? nil : waiting)
    }

    private func commit(_ group: [WriteOperation]) {
        let retry = attempt(group, mayRetry: true)
        guard !retry.isEmpty else { return }
        // LMDB's map is full, and even a delete needs fresh pages (copy-on-write). Grow the map so that
        // deliveries can drain the queue; appends keep getting `full` from the capacity policy.
        if let failure = growMap() {
            for operation in retry { operation.fail(failure) }
        } else {
            _ = attempt(retry, mayRetry: false)
        }
    }

    /// Applies `group` in one transaction and commits it. Returns the operations that free space and
    /// failed only because LMDB's map is full, when `mayRetry`; every other operation is completed or failed.
    private func attempt(_ group: [WriteOperation], mayRetry: Bool) -> [WriteOperation] {
        let parent: Transaction
        do {
            parent = try environment.beginTransaction(readOnly: false)
        } catch {
            let failure = queueError(error)
            logger.error("queue write transaction failed to begin", metadata: ["ferry.queue.error": "\(failure)"])
            for operation in group { operation.fail(failure) }
            return []
        }

        var retry: [WriteOperation] = []
        var context = WriteContext(txn: parent, databases: databases, configuration: configuration, path: path,
                                   now: clock(), state: state, consumers: consumers)
        var succeeded: [(WriteOperation, @Sendable () -> Void)] = []
        for operation in group {
            // A child transaction per operation: LMDB undoes a failed one (even MDB_MAP_FULL) without
            // disturbing the others, so one request's failure never costs another request its commit.
            do {
                let child = try environment.beginTransaction(readOnly: false, parent: parent)
                var childContext = WriteContext(txn: child, databases: databases, configuration: configuration,
                                                path: path, now: context.now, state: context.state, consumers: context.consumers,
                                                disk: context.disk)
                let completion: @Sendable () -> Void
                do {
                    completion = try operation.apply(&childContext)
                    context.disk = childContext.disk
                } catch {
                    context.disk = childContext.disk
                    child.abort()
                    throw error
                }
                try child.commit()
                context.state = childContext.state
                context.consumers = childContext.consumers
                succeeded.append((operation, completion))
            } catch let error as LMDBError where error.isMapFull && mayRetry && operation.freesSpace {
                retry.append(operation)
            } catch {
                operation.fail(queueError(error))
            }
        }

        guard !succeeded.isEmpty else {
            parent.abort()
            return retry
        }

        housekeeping(&context, parent: parent)
        let stats: QueueStats
        do {
            try pruneSeen(&context)
            try Queue.persistConsumers(&context.consumers, txn: parent, databases: databases)
            let encoded = context.state.encoded()
            try encoded.withUnsafeBytes { value in
                try Array("state".utf8).withUnsafeBytes { key in try parent.put(databases.meta, key, value) }
            }
            stats = try Queue.stats(in: parent, databases: databases, state: context.state, consumers: context.consumers,
                                    environment: environment, maxBytes: configuration.maxBytes)
        } catch {
            parent.abort()
            return finishFailed(succeeded.map(\.0), error, retry: retry, mayRetry: mayRetry)
        }

        do {
            // The one fsync of the group (LMDB's synced commit: data pages, fdatasync, meta page, fdatasync).
            try parent.commit()
        } catch {
            // LMDB has freed the transaction; nothing of the group is stored.
            return finishFailed(succeeded.map(\.0), error, retry: retry, mayRetry: mayRetry)
        }
        state = context.state
        consumers = context.consumers
        commits += 1
        operations += UInt64(succeeded.count)
        var published = stats
        published.groupCommits = commits
        published.groupedOperations = operations
        publish(published)
        for (_, completion) in succeeded { completion() }
        return retry
    }

    /// Every group: records no consumer needs any more are swept, and lag bounds are enforced. In a child
    /// transaction of its own: if it fails, the group's changes still commit, and the next group retries.
    private func housekeeping(_ context: inout WriteContext, parent: Transaction) {
        guard !context.consumers.isEmpty else { return }
        do {
            let child = try environment.beginTransaction(readOnly: false, parent: parent)
            var childContext = WriteContext(txn: child, databases: databases, configuration: configuration, path: path,
                                            now: context.now, state: context.state, consumers: context.consumers)
            var more = false
            do {
                more = try Queue.sweep(&childContext)
                let expired = try Queue.expireOld(&childContext)
                if expired.records > 0 {
                    logger.warning("records older than queue.max_age were dropped undelivered", metadata: [
                        "ferry.queue.dropped_records": "\(expired.records)", "ferry.queue.dropped_events": "\(expired.events)",
                        "ferry.queue.path": "\(path)",
                    ])
                }
                more = more || expired.more
                let dropped = try Queue.enforceLagBounds(&childContext)
                if dropped > 0 {
                    logger.warning("outputs past their lag bound were moved past their oldest records", metadata: [
                        "ferry.queue.dropped_records": "\(dropped)", "ferry.queue.path": "\(path)",
                    ])
                }
                try Queue.settleIfEmpty(&childContext)
            } catch {
                child.abort()
                throw error
            }
            try child.commit()
            context.state = childContext.state
            context.consumers = childContext.consumers
            // A removed output's records are swept in bounded steps, one group after another, also while
            // nothing else writes.
            if more { _ = submit(Self.housekeepingOnly) }
        } catch {
            logger.error("queue housekeeping failed; it is tried again with the next commit", metadata: ["ferry.queue.error": "\(error)"])
        }
    }

    /// Fails `operations` after their group could not be committed, keeping the space-freeing ones for a
    /// retry when the cause was a full map.
    private func finishFailed(_ operations: [WriteOperation], _ error: any Error, retry: [WriteOperation], mayRetry: Bool) -> [WriteOperation] {
        var retry = retry
        let failure = queueError(error)
        let mapFull = (error as? LMDBError)?.isMapFull ?? false
        logger.error("queue commit failed", metadata: ["ferry.queue.error": "\(failure)", "ferry.queue.group": "\(operations.count)"])
        for operation in operations {
            if mapFull && mayRetry && operation.freesSpace {
                retry.append(operation)
            } else {
                operation.fail(failure)
            }
        }
        return retry
    }

    /// Grows LMDB's map by a quarter (at least 64 MiB), up to four times the configured size.
    /// Returns an error if it may not grow further.
    private func growMap() -> QueueError? {
        let current = environment.info().mapSize
        let limit = configuration.mapSize.multipliedReportingOverflow(by: 4).overflow ? Int.max : configuration.mapSize * 4
        let grown = min(limit, current + max(64 << 20, current / 4))
        guard grown > current else {
            return QueueError(.full, "queue is full: LMDB's map in \(path) is at its largest (\(current) bytes) and a delete still does not fit; stop Ferry and run `ferry-tools compact --data-dir \(path)`")
        }
        do {
            try environment.setMapSize(grown)
        } catch {
            return queueError(error)
        }
        logger.warning("LMDB map full, grown so that deliveries can delete records", metadata: [
            "ferry.queue.map_size": "\(grown)", "ferry.queue.path": "\(path)",
        ])
        return nil
    }

    private func queueError(_ error: any Error) -> QueueError {
        switch error {
        case let error as QueueError: return error
        case let error as LMDBError:
            // LMDB reports a short write as EIO: when the disk has no room left, that is a full disk.
            if error.code == EIO && Self.diskIsFull(path) {
                return QueueError.writing(LMDBError(code: ENOSPC, operation: error.operation), path: path)
            }
            return QueueError.writing(error, path: path)
        default: return QueueError(.environmentFailed, "queue write failed in \(path): \(error)")
        }
    }

    /// True when the file system under `path` has less than 1 MiB free for us.
    static func diskIsFull(_ path: String) -> Bool {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return false }
        return UInt64(info.f_bavail) * UInt64(info.f_bsize) < 1 << 20
    }

    /// Deletes `seen` entries older than the configured age or beyond the configured count, oldest first.
    /// At most once a second: it rides a group commit and must stay cheap.
    private func pruneSeen(_ context: inout WriteContext) throws {
        guard context.now - lastSeenPrune >= 1000 else { return }
        lastSeenPrune = context.now
        let txn = context.txn
        var count = try txn.entries(databases.seen)
        let oldestKept = context.now - configuration.seenMaxAgeMilliseconds
        let cursor = try txn.cursor(databases.seenByTime)
        while let entry = try cursor.first(), entry.key.count > 8 {
            let time = Int64(bitPattern: UInt64(bigEndian: entry.key.loadUnaligned(as: UInt64.self)))
            guard time < oldestKept || count > configuration.seenMaxCount else { break }
            let id = [UInt8](entry.key[8...])
            try cursor.deleteCurrent()
            try id.withUnsafeBytes { key in _ = try txn.delete(databases.seen, key) }
            count -= 1
        }
    }
}

extension UInt64 {
    /// Subtraction that stops at zero: counters never wrap, even if a damaged record's header lied.
    mutating func subtractClamped(_ value: UInt64) {
        self = self >= value ? self - value : 0
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the service watchdog that reads the writer's heartbeat.
private func writerMonotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
