import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on `<data-dir>/ferry.lock`, holding the owner's pid, so that two agents never share
/// one queue. The kernel drops it when the process dies, even by SIGKILL.
///
/// A POSIX record lock (`fcntl(F_SETLK)`), not `flock`: a `flock` belongs to the open file description,
/// which a child forked by any thread (to run curl, say) shares until it execs — closing the queue in
/// that window would leave the lock held. Record locks belong to the process and are not inherited.
/// Because they are per process, a process-wide registry refuses a second open in the same process
/// (LMDB forbids that too: its own locks are per process).
final class DirectoryLock: Sendable {
    static let fileName = "ferry.lock"
    private static let heldInThisProcess = Mutex<Set<String>>([])

    private let state: Mutex<(fd: Int32, key: String)?>

    init(directory: String) throws(QueueError) {
        let path = directory + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw QueueError(.io, "cannot open \(path): \(String(cString: strerror(errno))); check the permissions of the data directory")
        }
        var info = stat()
        fstat(fd, &info)
        let key = "\(info.st_dev):\(info.st_ino)"
        let inserted = Self.heldInThisProcess.withLock { $0.insert(key).inserted }
        guard inserted else {
            close(fd)
            throw QueueError(.locked, "\(directory) is already open in this process (pid \(getpid())); close that queue first or give this one another --data-dir")
        }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        if fcntl(fd, F_SETLK, &lock) != 0 {
            let error = errno
            var probe = flock()
            probe.l_type = Int16(F_WRLCK)
            probe.l_whence = Int16(SEEK_SET)
            let holder = fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != Int16(F_UNLCK) ? Int(probe.l_pid) : nil
            close(fd)
            _ = Self.heldInThisProcess.withLock { $0.remove(key) }
            if error == EAGAIN || error == EACCES {
                let who = holder.map { "another process (pid \($0))" } ?? "another process"
                throw QueueError(.locked, "\(directory) is in use by \(who); stop that Ferry first or give this one another --data-dir")
            }
            throw QueueError(.io, "cannot lock \(path): \(String(cString: strerror(error)))")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        state = Mutex((fd, key))
    }

    /// Drops the lock. The pid stays in the file; the next owner overwrites it.
    func release() {
        state.withLock { state in
            guard let held = state else { return }
            close(held.fd)  // releases the record lock
            _ = Self.heldInThisProcess.withLock { $0.remove(held.key) }
            state = nil
        }
    }

    deinit { release() }
}
