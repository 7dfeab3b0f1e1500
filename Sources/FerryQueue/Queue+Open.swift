internal import CLMDB
import FerryWire
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

extension Queue {
    static let dataFileName = "data.mdb"

    /// Makes the data directory if missing; refuses a path that is a file.
    static func prepareDirectory(_ path: String) throws(QueueError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw QueueError(.notAQueue, "\(path) is a file, not a queue directory; give --data-dir a directory (it is made if missing)")
            }
            return
        }
        // mkdir -p: make each missing component.
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o750) != 0 && errno != EEXIST {
                throw QueueError(.io, "cannot make the queue directory \(current): \(String(cString: strerror(errno))); check the path and its permissions")
            }
        }
    }

    /// Refuses a `data.mdb` that is not a regular file before LMDB maps it.
    static func checkDataFile(_ path: String) throws(QueueError) {
        var info = stat()
        let file = path + "/" + dataFileName
        guard stat(file, &info) == 0 else { return }  // a new queue
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw QueueError(.notAQueue, "\(file) is not a regular file, so \(path) is not a Ferry queue; point --data-dir at a queue directory")
        }
    }

    /// LMDB maps `data.mdb` and would fault (SIGBUS) on pages past the end of a cut file: compare the file
    /// with the last page LMDB's meta page claims, before any page is read.
    static func checkTruncation(_ environment: Environment, path: String) throws(QueueError) {
        let info = environment.info()
        var fileInfo = stat()
        let file = path + "/" + dataFileName
        guard stat(file, &fileInfo) == 0 else { return }
        let needed = (info.lastPage + 1) * info.pageSize
        if Int(fileInfo.st_size) < needed {
            environment.close()
            throw QueueError(.truncated, "\(file) is truncated: \(fileInfo.st_size) bytes, but LMDB's meta page needs \(needed); the file was cut (interrupted copy or disk error). Restore it from a copy; `ferry-tools repair` cannot read past the cut")
        }
    }

    static func openError(_ error: LMDBError, path: String) -> QueueError {
        let file = path + "/" + dataFileName
        switch error.code {
        case MDB_INVALID:
            return QueueError(.notAQueue, "\(file) is not an LMDB file, so \(path) is not a Ferry queue; point --data-dir at a queue directory, or move that file away (if the machine lost power while this queue was first being made, nothing was stored in it yet)")
        case MDB_VERSION_MISMATCH:
            return QueueError(.incompatibleVersion, "\(path)/lock.mdb was made by another LMDB version; stop every process using the queue, delete lock.mdb (it holds no data) and start again")
        case MDB_INCOMPATIBLE:
            return QueueError(.notAQueue, "\(file) is an LMDB environment but not a Ferry queue (\(error)); point --data-dir at a queue directory")
        case EACCES, EPERM, EROFS:
            return QueueError(.io, "cannot open the queue in \(path): \(String(cString: strerror(error.code))); check the permissions of the directory and its files")
        case ENOSPC, EDQUOT:
            return QueueError(.full, "cannot open the queue in \(path): the disk is full; free disk space and start again")
        default:
            return QueueError(.environmentFailed, "cannot open the queue in \(path) (\(error)); run `ferry-tools verify --data-dir \(path)`")
        }
    }

    /// What `initialize` found or made.
    struct Initialized {
        var databases: Databases
        var agentID: String
        var state: QueueState
        var consumers: [ConsumerState]
        /// Consumers in the queue that the configuration no longer names: removed, with what they never got.
        var removed: [(name: String, pendingEvents: UInt64)] = []
        /// The format the queue had before this open (1 when it was upgraded now).
        var formatBefore: UInt32
    }

    /// Opens the named databases, making them in a new environment. Checks the format version and that
    /// an existing environment is a Ferry queue. With `create` (an exclusive open) it upgrades a queue of
    /// format 1 to this format, and with `consumers` it makes the consumers the configuration names and
    /// removes those it does not name (nil keeps them all: the tools).
    static func initialize(_ txn: Transaction, path: String, create: Bool = true, consumers configured: [ConsumerSettings]? = nil) throws -> Initialized {
        let file = path + "/" + dataFileName
        let meta: Database
        var agentID: String
        var state: QueueState
        var version = formatVersion
        if let existing = try txn.openDatabase("meta", create: false) {
            meta = existing
            guard let format = try Array("format".utf8).withUnsafeBytes({ try txn.get(meta, $0) }), format.count == 4 else {
                throw QueueError(.notAQueue, "\(file) has a meta table without a format version, so it is not a Ferry queue; point --data-dir at a queue directory")
            }
            version = UInt32(bigEndian: format.loadUnaligned(as: UInt32.self))
            guard version >= 1 && version <= formatVersion else {
                let writer = try Array("written-by".utf8).withUnsafeBytes { try txn.get(meta, $0) }.map { " written by Ferry " + String(decoding: $0, as: UTF8.self) } ?? ""
                throw QueueError(.incompatibleVersion, "\(path) holds a queue of format \(version)\(writer); this Ferry (\(ferryVersion)) reads formats 1 to \(formatVersion). Run the Ferry version that wrote it, deliver or export its events, then start this one on an empty --data-dir")
            }
            guard let id = try Array("agent-id".utf8).withUnsafeBytes({ try txn.get(meta, $0) }),
                  let stored = try Array("state".utf8).withUnsafeBytes({ try txn.get(meta, $0) }),
                  let decoded = QueueState(decoding: stored)
            else {
                throw QueueError(.notAQueue, "\(file) has a damaged meta table (agent id or state missing); run `ferry-tools repair --data-dir \(path)`")
            }
            agentID = String(decoding: id, as: UTF8.self)
            state = decoded
        } else {
            guard create else {
                throw QueueError(.notAQueue, "\(file) has no Ferry meta table: it is an empty or foreign LMDB environment, not a Ferry queue")
            }
            let main = try txn.mainDatabase()
            guard try txn.entries(main) == 0 else {
                throw QueueError(.notAQueue, "\(file) is an LMDB environment of another program, not a Ferry queue; point --data-dir at a queue directory")
            }
            meta = try txn.openDatabase("meta", create: true)!
            agentID = (0..<2).map { _ in hex64(UInt64.random(in: .min ... .max)) }.joined().prefix(16).description
            state = QueueState()
            try Array("agent-id".utf8).withUnsafeBytes { key in try Array(agentID.utf8).withUnsafeBytes { try txn.put(meta, key, $0) } }
            try Array("state".utf8).withUnsafeBytes { key in try state.encoded().withUnsafeBytes { try txn.put(meta, key, $0) } }
        }
        func table(_ name: String) throws -> Database {
            guard let dbi = try txn.openDatabase(name, create: create) else {
                throw QueueError(.notAQueue, "\(file) has no \(name) table; run `ferry-tools repair --data-dir \(path)` with the agent stopped")
            }
            return dbi
        }
        let databases = Databases(
            records: try table("records"),
            dead: try table("dead"),
            meta: meta,
            seen: try table("seen"),
            seenByTime: try table("seen_by_time"),
            batches: try txn.openDatabase("batches", create: create),
            positions: try txn.openDatabase("positions", create: create),
            outputs: try txn.openDatabase("outputs", create: create),
            acks: try txn.openDatabase("acks", create: create),
            deadMarks: try txn.openDatabase("dead_marks", create: create)
        )
        // A state older than the records (not possible with synced commits, but cheap to guard): never
        // hand out a sequence number that is already stored.
        if let last = try txn.cursor(databases.records).last(), let sequence = sequence(fromKey: last.key), sequence >= state.nextSequence {
            state.nextSequence = sequence + 1
        }
        var result = Initialized(databases: databases, agentID: agentID, state: state, consumers: [], formatBefore: version)
        if create && version < formatVersion {
            try upgradeFromFormat1(txn, databases: databases, state: state)
        }
        result.consumers = try loadConsumers(txn, databases: databases, state: state, configured: configured)
        if create {
            if let configured {
                result.removed = try reconcile(txn, databases: databases, consumers: &result.consumers, configured: configured, state: &result.state)
            }
            if result.consumers.isEmpty {
                result.consumers = [try makeConsumer(txn, databases: databases, settings: ConsumerSettings(name: ConsumerSettings.defaultName), state: state)]
            }
            for c in result.consumers.indices { result.consumers[c].dirty = true }
            try persistConsumers(&result.consumers, txn: txn, databases: databases)
            try Array("format".utf8).withUnsafeBytes { key in
                try withUnsafeBytes(of: formatVersion.bigEndian) { try txn.put(meta, key, $0) }
            }
            try Array("written-by".utf8).withUnsafeBytes { key in try Array(ferryVersion.utf8).withUnsafeBytes { try txn.put(meta, key, $0) } }
            try Array("state".utf8).withUnsafeBytes { key in try result.state.encoded().withUnsafeBytes { try txn.put(meta, key, $0) } }
        }
        return result
    }

    /// Format 1 had one consumer and no consumer tables: its waiting records, dead records and remembered
    /// batches become those of the consumer `default`. Runs once, in the first exclusive open.
    static func upgradeFromFormat1(_ txn: Transaction, databases: Databases, state: QueueState) throws {
        guard let outputs = databases.outputs, let deadMarks = databases.deadMarks else { return }
        guard try txn.entries(outputs) == 0 else { return }
        var consumer = ConsumerState(id: 1, name: ConsumerSettings.defaultName, watermark: 0, settings: ConsumerSettings(name: ConsumerSettings.defaultName))
        consumer.pendingEvents = state.storedEvents
        consumer.pendingBytes = state.storedBytes
        // Dead records: marked as the default consumer's.
        let dead = try txn.cursor(databases.dead)
        var entry = try dead.first()
        var marks: [(UInt64, [UInt8])] = []
        while let current = entry, let sequence = sequence(fromKey: current.key) {
            let record = DeadRecord(sequence: sequence, value: current.value)
            marks.append((sequence, DeadRecord.encodeMark(reason: Array(record.reason.utf8.prefix(DeadRecord.maxReasonBytes)), buriedAt: record.movedAt)))
            entry = try dead.next()
        }
        for (sequence, mark) in marks {
            try withConsumerKey(consumer.id, sequence) { key in try mark.withUnsafeBytes { try txn.put(deadMarks, key, $0) } }
        }
        consumer.deadRecords = UInt64(marks.count)
        consumer.deadRecordsTotal = UInt64(marks.count)
        // Remembered batches: keyed by first sequence alone in format 1, by consumer and first sequence now.
        if let batches = databases.batches {
            var old: [(UInt64, UInt64)] = []
            let cursor = try txn.cursor(batches)
            var batch = try cursor.first()
            while let current = batch {
                if let first = sequence(fromKey: current.key), let last = sequence(fromKey: current.value) { old.append((first, last)) }
                batch = try cursor.next()
            }
            for (first, last) in old {
                _ = try withSequenceKey(first) { try txn.delete(batches, $0) }
                try withConsumerKey(consumer.id, first) { key in try withUnsafeBytes(of: last.bigEndian) { try txn.put(batches, key, $0) } }
            }
        }
        consumer.dirty = true
        var consumers = [consumer]
        try persistConsumers(&consumers, txn: txn, databases: databases)
        try setNextConsumerID(txn, databases: databases, 2)
    }

    /// The consumers stored in `outputs`, with their settled ranges; for a read-only open of a format-1
    /// queue, the implied `default`.
    static func loadConsumers(_ txn: Transaction, databases: Databases, state: QueueState, configured: [ConsumerSettings]?) throws -> [ConsumerState] {
        guard let outputs = databases.outputs else {
            var implied = ConsumerState(id: 1, name: ConsumerSettings.defaultName, watermark: 0, settings: ConsumerSettings(name: ConsumerSettings.defaultName))
            implied.pendingEvents = state.storedEvents
            implied.pendingBytes = state.storedBytes
            return [implied]
        }
        var consumers: [ConsumerState] = []
        let cursor = try txn.cursor(outputs)
        var entry = try cursor.first()
        while let current = entry {
            let name = String(decoding: current.key, as: UTF8.self)
            let settings = configured?.first { $0.name == name } ?? ConsumerSettings(name: name)
            guard var consumer = ConsumerState(name: name, decoding: current.value, settings: settings) else {
                throw QueueError(.notAQueue, "the output \(name) has a damaged row in the queue's outputs table; run `ferry-tools repair` with the agent stopped")
            }
            consumer.settled = try settledRanges(txn, databases: databases, consumer: consumer.id)
            consumers.append(consumer)
            entry = try cursor.next()
        }
        return consumers
    }

    /// Makes the consumers `configured` names that the queue does not have, and removes those it has that
    /// are no longer configured (their cursor, ranges, batches and dead set). Returns the removed.
    static func reconcile(_ txn: Transaction, databases: Databases, consumers: inout [ConsumerState], configured: [ConsumerSettings],
                          state: inout QueueState) throws -> [(name: String, pendingEvents: UInt64)] {
        var removed: [(name: String, pendingEvents: UInt64)] = []
        for consumer in consumers where !configured.contains(where: { $0.name == consumer.name }) {
            try removeConsumer(txn, databases: databases, consumer, state: &state)
            removed.append((consumer.name, consumer.pendingEvents))
        }
        consumers.removeAll { consumer in !configured.contains { $0.name == consumer.name } }
        for settings in configured where !consumers.contains(where: { $0.name == settings.name }) {
            consumers.append(try makeConsumer(txn, databases: databases, settings: settings, state: state))
        }
        // In the configured order, which is the order stats list them.
        consumers.sort { a, b in
            (configured.firstIndex { $0.name == a.name } ?? 0) < (configured.firstIndex { $0.name == b.name } ?? 0)
        }
        return removed
    }

    /// A new consumer: at the oldest stored record, or after the newest.
    static func makeConsumer(_ txn: Transaction, databases: Databases, settings: ConsumerSettings, state: QueueState) throws -> ConsumerState {
        let id = try nextConsumerID(txn, databases: databases)
        try setNextConsumerID(txn, databases: databases, id + 1)
        var consumer: ConsumerState
        switch settings.startFrom {
        case .oldest:
            consumer = ConsumerState(id: id, name: settings.name, watermark: 0, settings: settings)
            consumer.pendingEvents = state.storedEvents
            consumer.pendingBytes = state.storedBytes
        case .newest:
            consumer = ConsumerState(id: id, name: settings.name, watermark: state.nextSequence, settings: settings)
        }
        consumer.dirty = true
        return consumer
    }

    /// Deletes a consumer's row, ranges, remembered batches and dead marks. A record in `dead` that no
    /// other consumer buried goes with it. Records only it still needed are deleted by the writer's sweep.
    static func removeConsumer(_ txn: Transaction, databases: Databases, _ consumer: ConsumerState, state: inout QueueState) throws {
        guard let outputs = databases.outputs, let acks = databases.acks, let deadMarks = databases.deadMarks else { return }
        _ = try Array(consumer.name.utf8).withUnsafeBytes { try txn.delete(outputs, $0) }
        for table in [acks, deadMarks] + (databases.batches.map { [$0] } ?? []) {
            let cursor = try txn.cursor(table)
            var marked: [UInt64] = []
            var entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
            while let current = entry, let key = consumerKey(current.key), key.id == consumer.id {
                if table == deadMarks { marked.append(key.sequence) }
                try cursor.deleteCurrent()
                entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
            }
            for sequence in marked {
                // Still marked by another consumer? Then the dead record stays.
                let others = try txn.cursor(outputs)
                var row = try others.first()
                var kept = false
                while let current = row, !kept {
                    if current.value.count >= 5 {
                        let id = UInt32(bigEndian: current.value.loadUnaligned(fromByteOffset: 1, as: UInt32.self))
                        kept = try withConsumerKey(id, sequence) { try txn.get(deadMarks, $0) } != nil
                    }
                    row = try others.next()
                }
                guard !kept else { continue }
                try withSequenceKey(sequence) { key in
                    guard let value = try txn.get(databases.dead, key) else { return }
                    if let record = try? DeadRecord.recordBytes(of: value) {
                        let events = (try? QueueRecord.header(of: record)).map { UInt64($0.eventCount) } ?? 0
                        state.deadBytes.subtractClamped(UInt64(record.count))
                        state.deadEvents.subtractClamped(events)
                        state.purgedEvents += events
                    }
                    _ = try txn.delete(databases.dead, key)
                }
            }
        }
    }

    static func nextConsumerID(_ txn: Transaction, databases: Databases) throws -> UInt32 {
        guard let value = try Array("next-output-id".utf8).withUnsafeBytes({ try txn.get(databases.meta, $0) }), value.count == 4 else { return 1 }
        return UInt32(bigEndian: value.loadUnaligned(as: UInt32.self))
    }

    static func setNextConsumerID(_ txn: Transaction, databases: Databases, _ id: UInt32) throws {
        try Array("next-output-id".utf8).withUnsafeBytes { key in try withUnsafeBytes(of: id.bigEndian) { try txn.put(databases.meta, key, $0) } }
    }

    /// Sizes and counters as seen in `txn`: entries from LMDB's page headers, ends of `records` from two
    /// cursor moves, the rest from `state`. O(log n) at most, whatever the backlog.
    static func stats(in txn: Transaction, databases: Databases, state: QueueState, consumers: [ConsumerState], environment: Environment,
                      maxBytes: Int) throws -> QueueStats {
        let cursor = try txn.cursor(databases.records)
        var first: (UInt64, Int64)?
        if let entry = try cursor.first(), let sequence = sequence(fromKey: entry.key) {
            first = (sequence, (try? QueueRecord.header(of: entry.value))?.createdAt ?? 0)
        }
        let last = try cursor.last().flatMap { sequence(fromKey: $0.key) }
        var stats = QueueStats(state: state, records: try txn.entries(databases.records), deadRecords: try txn.entries(databases.dead),
                               first: first, last: last, info: environment.info(), maxBytes: maxBytes)
        stats.outputs = try consumers.map { consumer in
            // The oldest record it has not settled: its lag in time.
            var oldest: Int64?
            var from = consumer.watermark
            while let entry = try withSequenceKey(from, { try cursor.seek($0) }), let sequence = sequence(fromKey: entry.key) {
                if let range = consumer.settled.range(holding: sequence) {
                    from = range.upperBound + 1
                    continue
                }
                oldest = (try? QueueRecord.header(of: entry.value))?.createdAt
                break
            }
            return OutputStats(consumer, oldestPendingCreatedAt: oldest)
        }
        return stats
    }
}

func hex64(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

extension Queue {
    /// The newest time the queue holds: its last record's `createdAt` or its newest `seen` entry's time,
    /// whichever is later. The process's `RecordTime` is raised to it at open, so that a wall clock that
    /// went back while Ferry was stopped never makes a stored time lie in the future (negative ages,
    /// `seen` entries that outlive their age).
    static func newestStoredTime(_ txn: Transaction, databases: Databases) throws -> Int64 {
        var newest = Int64.min
        if let last = try txn.cursor(databases.records).last(), let header = try? QueueRecord.header(of: last.value) {
            newest = header.createdAt
        }
        if let last = try txn.cursor(databases.seenByTime).last(), last.key.count >= 8 {
            newest = max(newest, Int64(bitPattern: UInt64(bigEndian: last.key.loadUnaligned(as: UInt64.self))))
        }
        return newest
    }

    /// How far the process's clock is raised for `newestStored`: up to a day ahead of the wall clock. A
    /// clock that went back by minutes or hours is absorbed; one that was years in the future (a wrong NTP
    /// server, since corrected) is not carried on forever, since every record made after would inherit it.
    static func raisedTime(newestStored: Int64, wall: Int64 = currentTimeMilliseconds()) -> Int64 {
        min(newestStored, wall + 86_400_000)
    }
}
