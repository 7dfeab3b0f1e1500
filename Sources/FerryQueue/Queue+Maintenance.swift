internal import CLMDB
import FerryWire
import Dispatch
import FoundationEssentials
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Operations of `ferry-tools` that walk or rewrite the whole queue. Reads work on a queue opened
// read-only next to a running agent; rewrites (repair, compact) take the directory's lock first.

extension Queue {
    /// What `verify` found: totals, and every record that fails a check, with its sequence and why.
    public struct VerifyReport: Sendable {
        public var records = 0
        public var events = 0
        public var storedBytes = 0
        public var uncompressedBytes = 0
        public var deadRecords = 0
        /// Damaged records of `records` (CRC, header, gzip or NDJSON), in sequence order.
        public var bad: [CorruptRecord] = []
        /// Damaged records of `dead`.
        public var badDead: [CorruptRecord] = []
    }

    /// Checks every record: header and CRC, then the gzip payload and each NDJSON line (one JSON object
    /// each, as many as the header says). `progress` gets the stored bytes checked so far.
    public func verify(progress: (Int) -> Void = { _ in }) throws(QueueError) -> VerifyReport {
        var report = VerifyReport()
        var next: UInt64 = 0
        while true {
            let page = try peek(from: next, maxRecords: 256)
            if page.records.isEmpty && page.corrupt.isEmpty { break }
            next = page.nextSequence
            report.bad += page.corrupt
            report.records += page.corrupt.count
            // Decompressing and validating is the cost: spread a page over every core.
            let records = page.records
            let problems = Mutex([WireError?](repeating: nil, count: records.count))
            DispatchQueue.concurrentPerform(iterations: records.count) { index in
                if let problem = Self.deepCheck(records[index].record) {
                    problems.withLock { $0[index] = problem }
                }
            }
            let found = problems.withLock { $0 }
            for (stored, problem) in zip(records, found) {
                report.records += 1
                report.storedBytes += stored.record.storedSize
                if let problem {
                    report.bad.append(CorruptRecord(sequence: stored.sequence, error: problem))
                } else {
                    report.events += Int(stored.record.eventCount)
                    report.uncompressedBytes += Int(stored.record.uncompressedLength)
                }
            }
            progress(report.storedBytes)
        }
        report.bad.sort { $0.sequence < $1.sequence }
        var deadFrom: UInt64 = 0
        while true {
            let dead = try deadRecords(from: deadFrom, maxRecords: 256)
            guard let last = dead.last else { break }
            deadFrom = last.sequence + 1
            for record in dead {
                report.deadRecords += 1
                switch record.record {
                case .success(let r): if let problem = Self.deepCheck(r) { report.badDead.append(CorruptRecord(sequence: record.sequence, error: problem)) }
                case .failure(let error): report.badDead.append(CorruptRecord(sequence: record.sequence, error: error))
                }
            }
        }
        return report
    }

    /// Decompresses a record whose CRC passed and checks its lines; nil when all is well.
    static func deepCheck(_ record: QueueRecord) -> WireError? {
        let lines: [ByteBuffer]
        do {
            lines = try record.events()
        } catch {
            return error
        }
        for (index, line) in lines.enumerated() {
            do {
                try line.withUnsafeReadableBytes { try JSONValidator.validateObject($0) }
            } catch {
                return WireError(.invalidGzip, "event \(index + 1) is not a JSON object (\(error)); the record was stored damaged")
            }
        }
        return nil
    }

    /// Deletes every waiting record (not the dead ones). Returns how many records and events went.
    @discardableResult
    public func purgeRecords() async throws(QueueError) -> (records: Int, events: UInt64) {
        try await perform(weight: 0, freesSpace: true) { context throws -> (records: Int, events: UInt64) in
            let cursor = try context.txn.cursor(context.databases.records)
            var records = 0
            var events: UInt64 = 0
            while let entry = try cursor.first() {
                events += (try? QueueRecord.header(of: entry.value)).map { UInt64($0.eventCount) } ?? 0
                records += 1
                try cursor.deleteCurrent()
            }
            context.state.purgedEvents += events
            context.state.storedEvents = 0
            context.state.storedBytes = 0
            return (records, events)
        }
    }

    // MARK: Rewrites (agent stopped)

    /// What `repair` did.
    public struct RepairReport: Sendable {
        public var kept = 0
        public var keptEvents = 0
        public var quarantined: [CorruptRecord] = []
        public var deadKept = 0
        /// Where the environment before the repair was moved; delete it once satisfied.
        public var backup: String = ""
        public var quarantineDirectory: String = ""
    }

    /// Rewrites the queue in `path` with every good record (same sequence numbers), every dead record,
    /// the `seen` table, the remembered batches and the inputs' read positions, and moves each damaged record's raw bytes to `quarantine-<time>/` with the
    /// reason. The old `data.mdb` is kept as `data.mdb.before-repair-<time>` until the operator deletes it.
    /// Needs the directory to itself (the agent stopped).
    public static func repair(at path: String, progress: (Int) -> Void = { _ in }) throws(QueueError) -> RepairReport {
        let lock = try DirectoryLock(directory: path)
        defer { lock.release() }
        let stamp = Self.timestamp()
        let staging = path + "/repair-\(stamp)"
        var report = RepairReport()
        report.quarantineDirectory = path + "/quarantine-\(stamp)"
        report.backup = path + "/" + dataFileName + ".before-repair-\(stamp)"
        do {
            let old = try Environment(path: path, mapSize: 0, maxDatabases: Queue.maxDatabases, flags: [.noTLS, .readOnly])
            defer { old.close() }
            try checkTruncation(old, path: path)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            let info = old.info()
            let fresh = try Environment(path: staging, mapSize: max(info.mapSize, (info.lastPage + 1) * info.pageSize * 2), maxDatabases: Queue.maxDatabases, flags: [.noTLS])
            defer { fresh.close() }
            try old.read { src in
                let opened = try initialize(src, path: path, create: false)
                let databases = opened.databases
                var consumers = opened.databases.outputs == nil ? [] : opened.consumers
                let dst = try fresh.beginTransaction(readOnly: false)
                do {
                    let records = try dst.openDatabase("records", create: true)!
                    var state = opened.state
                    state.storedEvents = 0
                    state.storedBytes = 0
                    state.deadEvents = 0
                    state.deadBytes = 0
                    for c in consumers.indices {
                        consumers[c].pendingEvents = 0
                        consumers[c].pendingBytes = 0
                    }
                    let cursor = try src.cursor(databases.records)
                    var entry = try cursor.first()
                    var checked = 0
                    while let current = entry, let sequence = sequence(fromKey: current.key) {
                        checked += current.value.count
                        var problem: WireError?
                        do {
                            let record = try QueueRecord(validating: current.value)
                            problem = deepCheck(record)
                            if problem == nil {
                                try dst.put(records, current.key, current.value, append: true)
                                report.kept += 1
                                report.keptEvents += Int(record.eventCount)
                                state.storedEvents += UInt64(record.eventCount)
                                state.storedBytes += UInt64(current.value.count)
                                for c in consumers.indices where !consumers[c].isDone(sequence) {
                                    consumers[c].pendingEvents += UInt64(record.eventCount)
                                    consumers[c].pendingBytes += UInt64(current.value.count)
                                }
                            }
                        } catch let error as WireError {
                            problem = error
                        }
                        if let problem {
                            try quarantine(current.value, sequence: sequence, reason: problem.message, into: report.quarantineDirectory)
                            report.quarantined.append(CorruptRecord(sequence: sequence, error: problem))
                        }
                        progress(checked)
                        entry = try cursor.next()
                    }
                    // Every other table as it is: dead records, `seen`, remembered batches, input positions,
                    // the outputs' cursors, ranges and dead marks, and `meta` (its state recomputed below).
                    let tables: [(String, Database?)] = [
                        ("dead", databases.dead), ("seen", databases.seen), ("seen_by_time", databases.seenByTime),
                        ("batches", databases.batches), ("positions", databases.positions), ("outputs", databases.outputs),
                        ("acks", databases.acks), ("dead_marks", databases.deadMarks), ("meta", databases.meta),
                    ]
                    for (name, source) in tables {
                        guard let source else { continue }
                        let target = try dst.openDatabase(name, create: true)!
                        let c = try src.cursor(source)
                        var e = try c.first()
                        while let current = e {
                            try dst.put(target, current.key, current.value)
                            if source == databases.dead, let bytes = try? DeadRecord.recordBytes(of: current.value) {
                                report.deadKept += 1
                                state.deadBytes += UInt64(bytes.count)
                                state.deadEvents += (try? QueueRecord.header(of: bytes)).map { UInt64($0.eventCount) } ?? 0
                            }
                            e = try c.next()
                        }
                    }
                    let meta = try dst.openDatabase("meta", create: true)!
                    try Array("state".utf8).withUnsafeBytes { key in try state.encoded().withUnsafeBytes { try dst.put(meta, key, $0) } }
                    if !consumers.isEmpty {
                        for c in consumers.indices { consumers[c].dirty = true }
                        let target = Databases(records: records, dead: try dst.openDatabase("dead", create: true)!, meta: meta,
                                               seen: try dst.openDatabase("seen", create: true)!, seenByTime: try dst.openDatabase("seen_by_time", create: true)!,
                                               batches: nil, positions: nil, outputs: try dst.openDatabase("outputs", create: true),
                                               acks: try dst.openDatabase("acks", create: true), deadMarks: nil)
                        try persistConsumers(&consumers, txn: dst, databases: target)
                    }
                    try dst.commit()
                } catch {
                    dst.abort()
                    throw error
                }
            }
        } catch let error as QueueError {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        } catch let error as LMDBError {
            try? FileManager.default.removeItem(atPath: staging)
            throw openError(error, path: path)
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw QueueError(.io, "repair of \(path) failed: \(error); the queue was left as it was")
        }
        // Swap: the old environment is kept under its backup name; the repaired one takes its place.
        guard rename(path + "/" + dataFileName, report.backup) == 0,
              rename(staging + "/" + dataFileName, path + "/" + dataFileName) == 0 else {
            throw QueueError(.io, "repair could not move the repaired environment into place (\(String(cString: strerror(errno)))); the repaired copy is in \(staging), the original in \(path)")
        }
        unlink(path + "/lock.mdb")
        try? FileManager.default.removeItem(atPath: staging)
        return report
    }

    static func quarantine(_ bytes: UnsafeRawBufferPointer, sequence: UInt64, reason: String, into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/record-\(sequence).bin"))
        let line = "\(sequence)\t\(reason)\n"
        let reasons = directory + "/reasons.tsv"
        let fd = Glibc.open(reasons, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw QueueError(.io, "cannot write \(reasons): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let failed = Array(line.utf8).withUnsafeBytes { writeAll(fd, $0) }
        guard failed == 0 else { throw QueueError(.io, "cannot write \(reasons): \(String(cString: strerror(failed)))") }
    }

    /// Gives space back: a compacting copy of the environment (LMDB's `mdb_env_copy2` with
    /// `MDB_CP_COMPACT`, which leaves out free pages) replaces `data.mdb`. Needs the directory to itself.
    /// Returns the file size before and after.
    public static func compact(at path: String) throws(QueueError) -> (before: Int, after: Int) {
        let lock = try DirectoryLock(directory: path)
        defer { lock.release() }
        let file = path + "/" + dataFileName
        let before = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        let staging = path + "/compact-\(timestamp())"
        do {
            let environment = try Environment(path: path, mapSize: 0, maxDatabases: Queue.maxDatabases, flags: [.noTLS])
            defer { environment.close() }
            try checkTruncation(environment, path: path)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try lmdbCheck(mdb_env_copy2(environment.handle, staging, UInt32(MDB_CP_COMPACT)), "mdb_env_copy2")
        } catch let error as LMDBError {
            try? FileManager.default.removeItem(atPath: staging)
            throw QueueError(.io, "compacting \(path) failed (\(error)); the queue was left as it was")
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw QueueError(.io, "compacting \(path) failed (\(error)); the queue was left as it was")
        }
        guard rename(staging + "/" + dataFileName, file) == 0 else {
            throw QueueError(.io, "compact could not move the copy into place (\(String(cString: strerror(errno)))); the queue was left as it was, the copy is in \(staging)")
        }
        unlink(path + "/lock.mdb")
        try? FileManager.default.removeItem(atPath: staging)
        let after = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        return (before, after)
    }

    /// `20261203-081500` (UTC, to the second) for the names of repair's and compact's directories.
    static func timestamp() -> String {
        let text = Timestamp.rfc3339(milliseconds: currentTimeMilliseconds())  // 2026-12-03T08:15:00.000Z
        let digits = text.prefix(19).filter { $0.isNumber }
        return String(digits.prefix(8)) + "-" + String(digits.dropFirst(8))
    }
}
