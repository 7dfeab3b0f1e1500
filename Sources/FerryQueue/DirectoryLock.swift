import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on `<data-dir>/ferry.lock`, holding the owner's pid, so that two agents never share
/// one queue. The kernel drops the lock when the process dies, even by SIGKILL.
final class DirectoryLock: Sendable {
    static let fileName = "ferry.lock"
    private let fd: Mutex<Int32?>

    init(directory: String) throws(QueueError) {
        let path = directory + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw QueueError(.io, "cannot open \(path): \(String(cString: strerror(errno))); check the permissions of the data directory")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            let holder = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace() : ""
            if error == EWOULDBLOCK {
                let who = holder.isEmpty ? "another process" : "another process (pid \(holder))"
                throw QueueError(.locked, "\(directory) is in use by \(who); stop that Ferry first or give this one another --data-dir")
            }
            throw QueueError(.io, "cannot lock \(path): \(String(cString: strerror(error)))")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        self.fd = Mutex(fd)
    }

    /// Drops the lock. Closing the file unlocks it; the pid stays in the file, the next owner overwrites it.
    func release() {
        fd.withLock { fd in
            if let open = fd { close(open) }
            fd = nil
        }
    }

    deinit { release() }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
