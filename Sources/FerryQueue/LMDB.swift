internal import CLMDB
#if canImport(Glibc)
import Glibc
#endif

// The LMDB boundary: every MDB_* return code is turned into a Swift error here, and nowhere else.
// Above this file, the queue sees `LMDBError` and maps it once more into `QueueError` with a message
// that says what to do.

/// A failed LMDB call: the return code and the operation that returned it.
struct LMDBError: Error, CustomStringConvertible {
    let code: Int32
    let operation: StaticString

    var description: String { "\(operation): \(String(cString: mdb_strerror(code))) (\(code))" }

    var isMapFull: Bool { code == MDB_MAP_FULL }
    var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    /// A read began after the environment was closed (the queue was closed meanwhile).
    var isEnvironmentClosed: Bool { code == EBADF }

    static let environmentClosed = LMDBError(code: EBADF, operation: "read after the environment was closed")
    /// Errors after which the environment must be closed and opened again.
    var isFatal: Bool { code == MDB_PANIC || code == MDB_CORRUPTED || code == MDB_PAGE_NOTFOUND || code == EIO }
}

@inline(__always)
func lmdbCheck(_ rc: Int32, _ operation: StaticString) throws(LMDBError) {
    if rc != MDB_SUCCESS { throw LMDBError(code: rc, operation: operation) }
}

/// An LMDB environment. `MDB_env` is safe to share between threads; transactions are not (see `Transaction`).
final class Environment: @unchecked Sendable {
    let handle: OpaquePointer
    /// Guarded by `mapLock`: read under it shared, set under it exclusively.
    private var isClosed = false
    /// Read transactions (and `info`) hold it shared; changing the map size and closing hold it
    /// exclusively, because LMDB remaps the file (or unmaps it) and a reader inside the old mapping would
    /// fault. So a read racing a close (stats asked for while the agent stops) either finishes before
    /// the close or fails with `environmentClosed`; it never touches a closed environment.
    private let mapLock: UnsafeMutablePointer<pthread_rwlock_t>

    struct Flags: OptionSet {
        let rawValue: UInt32
        /// Read transactions are not tied to a thread: a Swift task may begin one on any thread.
        static let noTLS = Flags(rawValue: UInt32(MDB_NOTLS))
        static let readOnly = Flags(rawValue: UInt32(MDB_RDONLY))
        /// Skip zeroing malloc'd pages before writing them: they are fully written anyway.
        static let noMemInit = Flags(rawValue: UInt32(MDB_NOMEMINIT))
    }

    init(path: String, mapSize: Int, maxDatabases: UInt32, flags: Flags) throws(LMDBError) {
        var env: OpaquePointer?
        try lmdbCheck(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
        do {
            try lmdbCheck(mdb_env_set_maxdbs(env, maxDatabases), "mdb_env_set_maxdbs")
            try lmdbCheck(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
            // Never MDB_NOSYNC, MDB_NOMETASYNC or MDB_MAPASYNC: a commit returns only once it is on disk.
            try lmdbCheck(mdb_env_open(env, path, flags.rawValue, 0o640), "mdb_env_open")
        } catch {
            mdb_env_close(env)
            throw error
        }
        handle = env
        mapLock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        // Prefer the writer: a steady stream of readers must not postpone a resize forever.
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(mapLock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    /// Closes the environment once the reads in progress have ended; later reads fail.
    func close() {
        pthread_rwlock_wrlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        guard !isClosed else { return }
        isClosed = true
        mdb_env_close(handle)
    }

    deinit {
        close()
        pthread_rwlock_destroy(mapLock)
        mapLock.deallocate()
    }

    /// Grows LMDB's map to `size` bytes. Called by the writer thread between its transactions; waits
    /// until no read transaction of this process is open.
    func setMapSize(_ size: Int) throws(LMDBError) {
        pthread_rwlock_wrlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        guard !isClosed else { throw .environmentClosed }
        try lmdbCheck(mdb_env_set_mapsize(handle, size), "mdb_env_set_mapsize")
    }

    struct Info {
        var mapSize: Int
        var lastPage: Int
        var pageSize: Int
    }

    /// The map's size and use. Only for a caller that keeps the environment open (opening, the writer,
    /// maintenance, a read transaction): it takes no lock, so it may be called inside `read`, where
    /// taking the lock again could deadlock behind a waiting resize. Anyone else asks `infoIfOpen`.
    func info() -> Info {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(handle, &info)
        mdb_env_stat(handle, &stat)
        return Info(mapSize: info.me_mapsize, lastPage: info.me_last_pgno, pageSize: Int(stat.ms_psize))
    }

    /// The map's size and use, or nil once the environment is closed: for callers that race a close.
    func infoIfOpen() -> Info? {
        pthread_rwlock_rdlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        return isClosed ? nil : info()
    }

    /// Clears reader slots left by processes that died inside a read transaction. Returns how many.
    @discardableResult
    func clearStaleReaders() -> Int32 {
        var dead: Int32 = 0
        mdb_reader_check(handle, &dead)
        return dead
    }

    func beginTransaction(readOnly: Bool, parent: Transaction? = nil) throws(LMDBError) -> Transaction {
        var txn: OpaquePointer?
        try lmdbCheck(mdb_txn_begin(handle, parent?.handle, readOnly ? UInt32(MDB_RDONLY) : 0, &txn), "mdb_txn_begin")
        return Transaction(handle: txn!)
    }

    /// Runs `body` in a read transaction that ends before this returns. Values seen inside are valid only there.
    func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        pthread_rwlock_rdlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        guard !isClosed else { throw LMDBError.environmentClosed }
        let txn = try beginTransaction(readOnly: true)
        defer { txn.abort() }
        return try body(txn)
    }
}

typealias Database = MDB_dbi

/// A transaction handle. Write transactions belong to the thread that began them: only the writer
/// thread begins one, and it never leaves that thread or spans an `await`.
struct Transaction {
    let handle: OpaquePointer

    func commit() throws(LMDBError) { try lmdbCheck(mdb_txn_commit(handle), "mdb_txn_commit") }
    func abort() { mdb_txn_abort(handle) }

    /// Opens a named database; `create` makes it if missing. Returns nil when it does not exist.
    func openDatabase(_ name: String, create: Bool) throws(LMDBError) -> Database? {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_dbi_open")
        return dbi
    }

    /// The unnamed main database, whose keys are the names of the named ones.
    /// Deletes a named database and its entries (`mdb_drop`); the handle is closed with it.
    func drop(_ db: Database) throws(LMDBError) { try lmdbCheck(mdb_drop(handle, db, 1), "mdb_drop") }

    func mainDatabase() throws(LMDBError) -> Database {
        var dbi: MDB_dbi = 0
        try lmdbCheck(mdb_dbi_open(handle, nil, 0, &dbi), "mdb_dbi_open")
        return dbi
    }

    func entries(_ db: Database) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle, db, &stat), "mdb_stat")
        return stat.ms_entries
    }

    /// The value under `key`, valid until the transaction ends or the next write to this database.
    func get(_ db: Database, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(handle, db, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_get")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    func put(_ db: Database, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, append: Bool = false) throws(LMDBError) {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try lmdbCheck(mdb_put(handle, db, &k, &v, append ? UInt32(MDB_APPEND) : 0), "mdb_put")
    }

    /// Deletes `key`; false if it was not there.
    @discardableResult
    func delete(_ db: Database, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(handle, db, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try lmdbCheck(rc, "mdb_del")
        return true
    }

    func cursor(_ db: Database) throws(LMDBError) -> Cursor {
        var c: OpaquePointer?
        try lmdbCheck(mdb_cursor_open(handle, db, &c), "mdb_cursor_open")
        return Cursor(handle: c!)
    }
}

/// A cursor over one database. Closed on deinit; must not outlive its transaction.
final class Cursor {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }
    deinit { mdb_cursor_close(handle) }

    typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    private func move(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws(LMDBError) -> Entry? {
        var k = MDB_val(mv_size: key?.count ?? 0, mv_data: UnsafeMutableRawPointer(mutating: key?.baseAddress))
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_cursor_get")
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    func first() throws(LMDBError) -> Entry? { try move(MDB_FIRST) }
    func last() throws(LMDBError) -> Entry? { try move(MDB_LAST) }
    func next() throws(LMDBError) -> Entry? { try move(MDB_NEXT) }
    func previous() throws(LMDBError) -> Entry? { try move(MDB_PREV) }
    /// The first entry whose key is ≥ `key`.
    func seek(_ key: UnsafeRawBufferPointer) throws(LMDBError) -> Entry? { try move(MDB_SET_RANGE, key: key) }
    /// Deletes the entry under the cursor; the cursor then points at the next one.
    func deleteCurrent() throws(LMDBError) { try lmdbCheck(mdb_cursor_del(handle, 0), "mdb_cursor_del") }
}

/// Sequence numbers as LMDB keys: 8 bytes, big-endian, so that byte order is numeric order.
@inline(__always)
func withSequenceKey<R>(_ sequence: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withUnsafeBytes(of: sequence.bigEndian, body)
}

@inline(__always)
func sequence(fromKey key: UnsafeRawBufferPointer) -> UInt64? {
    guard key.count == 8 else { return nil }
    return UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
}
