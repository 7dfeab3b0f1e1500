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

    /// Opens the named databases, making them in a new environment. Checks the format version and that
    /// an existing environment is a Ferry queue.
    static func initialize(_ txn: Transaction, path: String, create: Bool = true) throws -> (Databases, String, QueueState) {
        let file = path + "/" + dataFileName
        let meta: Database
        var agentID: String
        var state: QueueState
        if let existing = try txn.openDatabase("meta", create: false) {
            meta = existing
            guard let format = try Array("format".utf8).withUnsafeBytes({ try txn.get(meta, $0) }), format.count == 4 else {
                throw QueueError(.notAQueue, "\(file) has a meta table without a format version, so it is not a Ferry queue; point --data-dir at a queue directory")
            }
            let version = UInt32(bigEndian: format.loadUnaligned(as: UInt32.self))
            guard version == formatVersion else {
                throw QueueError(.incompatibleVersion, "\(path) holds a queue of format \(version); this Ferry reads format \(formatVersion). Run the Ferry version that wrote it, deliver or export its events, then start this one on an empty --data-dir")
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
            try Array("format".utf8).withUnsafeBytes { key in
                try withUnsafeBytes(of: formatVersion.bigEndian) { try txn.put(meta, key, $0) }
            }
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
            positions: try txn.openDatabase("positions", create: create)
        )
        // A state older than the records (not possible with synced commits, but cheap to guard): never
        // hand out a sequence number that is already stored.
        if let last = try txn.cursor(databases.records).last(), let sequence = sequence(fromKey: last.key), sequence >= state.nextSequence {
            state.nextSequence = sequence + 1
        }
        return (databases, agentID, state)
    }

    /// Sizes and counters as seen in `txn`: entries from LMDB's page headers, ends of `records` from two
    /// cursor moves, the rest from `state`. O(log n) at most, whatever the backlog.
    static func stats(in txn: Transaction, databases: Databases, state: QueueState, environment: Environment,
                      maxBytes: Int) throws -> QueueStats {
        let cursor = try txn.cursor(databases.records)
        var first: (UInt64, Int64)?
        if let entry = try cursor.first(), let sequence = sequence(fromKey: entry.key) {
            first = (sequence, (try? QueueRecord.header(of: entry.value))?.createdAt ?? 0)
        }
        let last = try cursor.last().flatMap { sequence(fromKey: $0.key) }
        return QueueStats(state: state, records: try txn.entries(databases.records), deadRecords: try txn.entries(databases.dead),
                          first: first, last: last, info: environment.info(), maxBytes: maxBytes)
    }
}

func hex64(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
