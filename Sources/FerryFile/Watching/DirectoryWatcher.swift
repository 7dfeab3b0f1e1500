#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import Synchronization

/// Watches directories with inotify: one descriptor for every directory, one thread blocked in `poll` for
/// all of them, so that following thousands of files costs no thread, timer or poll loop per file, and an
/// idle input uses no CPU.
///
/// Events are reported by path, in the order the kernel gave them, to `onEvents` on the watcher's thread.
/// A queue overflow (`IN_Q_OVERFLOW`) or a watched directory that went away is reported as `.overflow`: the
/// caller then scans the globs again, which is also how it learns what inotify cannot tell.
package final class DirectoryWatcher: Sendable {
    package enum Event: Hashable, Sendable {
        /// A name appeared in a watched directory (created, moved in, or its attributes changed).
        case appeared(String)
        /// A file was written to.
        case modified(String)
        /// A name went away (deleted, or moved out; a move within watched directories appears next).
        case removed(String)
        /// Events were lost, or a watched directory went away: scan again.
        case overflow
    }

    private let inotify: Int32
    /// A pipe whose write end `stop()` writes to: it wakes the thread's `poll`.
    private let stopper: (read: Int32, write: Int32)
    private let directories = Mutex<[Int32: String]>([:])
    private let watched = Mutex<[String: Int32]>([:])
    private let pool = NIOThreadPool(numberOfThreads: 1)

    /// Makes the inotify instance; throws `FileInputError` (`system`) when the kernel refuses (the per-user
    /// limit `fs.inotify.max_user_instances`).
    package init() throws(FileInputError) {
        let descriptor = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        guard descriptor >= 0 else {
            throw FileInputError(.system, "inotify_init1 failed (errno \(errno)); raise fs.inotify.max_user_instances if it is reached")
        }
        var pipe: [Int32] = [-1, -1]
        guard Glibc.pipe(&pipe) == 0 else {
            close(descriptor)
            throw FileInputError(.system, "pipe2 failed (errno \(errno))")
        }
        for end in pipe {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        self.inotify = descriptor
        self.stopper = (pipe[0], pipe[1])
    }

    deinit {
        close(inotify)
        close(stopper.read)
        close(stopper.write)
    }

    /// Watches `directory` (no-op if watched already); returns false when it cannot (it does not exist, or
    /// the limit `fs.inotify.max_user_watches` is reached), in which case the next rescan tries again.
    @discardableResult
    package func watch(_ directory: String) -> Bool {
        if watched.withLock({ $0[directory] != nil }) { return true }
        let mask = UInt32(IN_CREATE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
            | UInt32(IN_ONLYDIR) | UInt32(IN_EXCL_UNLINK)
        let wd = inotify_add_watch(inotify, directory, mask)
        guard wd >= 0 else { return false }
        directories.withLock { $0[wd] = directory }
        watched.withLock { $0[directory] = wd }
        return true
    }

    /// The directories watched now.
    package var watchedDirectories: [String] { watched.withLock { Array($0.keys) }.sorted() }

    /// Starts the thread that reads events and hands them to `onEvents`; it runs until `stop()`.
    package func start(onEvents: @escaping @Sendable ([Event]) -> Void) {
        pool.start()
        pool.submit { [self] state in
            guard state == .active else { return }
            run(onEvents: onEvents)
        }
    }

    /// Stops the thread and waits for it.
    package func stop() async {
        var one: UInt8 = 1
        _ = write(stopper.write, &one, 1)
        try? await pool.shutdownGracefully()
    }

    private func run(onEvents: ([Event]) -> Void) {
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: stopper.read, events: Int16(POLLIN), revents: 0)]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            var events: [Event] = []
            while true {
                let n = read(inotify, buffer.baseAddress, buffer.count)
                if n < 0 {
                    if errno == EINTR { continue }
                    break
                }
                if n == 0 { break }
                parse(UnsafeRawBufferPointer(rebasing: buffer[..<n]), into: &events)
            }
            if !events.isEmpty { onEvents(events) }
        }
    }

    /// Turns `struct inotify_event` records (16-byte header, then a NUL-padded name) into events.
    private func parse(_ bytes: UnsafeRawBufferPointer, into events: inout [Event]) {
        var offset = 0
        while offset + 16 <= bytes.count {
            let wd = bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[(offset + 16)..<min(bytes.count, offset + 16 + length)])
            offset += 16 + length
            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                events.append(.overflow)
                continue
            }
            if mask & UInt32(IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
                // The directory itself went away (or was moved): forget the watch, let a rescan find it again.
                if let directory = directories.withLock({ $0.removeValue(forKey: wd) }) {
                    watched.withLock { $0[directory] = nil }
                    inotify_rm_watch(inotify, wd)
                }
                events.append(.overflow)
                continue
            }
            guard mask & UInt32(IN_ISDIR) == 0, let directory = directories.withLock({ $0[wd] }) else { continue }
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            guard !name.isEmpty else { continue }
            let path = directory == "/" ? "/" + name : directory + "/" + name
            let event: Event
            if mask & UInt32(IN_MODIFY) != 0 {
                event = .modified(path)
            } else if mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 {
                event = .removed(path)
            } else {
                event = .appeared(path)
            }
            if events.last != event { events.append(event) }
        }
    }
}
