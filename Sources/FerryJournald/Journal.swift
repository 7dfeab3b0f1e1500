import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// One open sd-journal handle: the thin layer over libsystemd that the reader uses. Return codes are mapped
/// here, once.
///
/// sd-journal is not thread-safe: every method is called from one thread at a time (the input's journal
/// thread), except `stop()`, which any thread may call. sd-journal refuses a handle used across `fork()`.
final class Journal: @unchecked Sendable {
    private let handle: OpaquePointer
    /// The journal's inotify descriptor (sd-journal owns it).
    private let journalFD: Int32
    /// A pipe whose read end `stop()` makes readable for good (a byte that nobody reads), so that `wait()`
    /// returns promptly at shutdown.
    private let stopPipe: (read: Int32, write: Int32)
    /// "the system journal", "the journal in /var/log/journal/…": for messages.
    let name: String

    /// What `wait()` saw.
    enum Change: Equatable {
        /// `stop()` was called.
        case stopped
        /// Entries may have been appended (or a timeout passed): read on.
        case appended
        /// Files were added or removed (rotation, vacuuming): the position must be checked.
        case invalidated
    }

    /// Opens `source`. Values are read whole (`sd_journal_set_data_threshold(0)`: the default 64 KiB would cut
    /// long messages), and the journal's inotify watches are set up before the first read, so that entries
    /// appended between the first read and the first wait are not missed.
    init(source: JournaldInputConfiguration.Source) throws(JournaldError) {
        var opened: OpaquePointer?
        let rc: Int32
        switch source {
        case .system:
            name = "the system journal"
            rc = sd_journal_open(&opened, Int32(SD_JOURNAL_LOCAL_ONLY))
        case .directory(let path):
            name = "the journal in \(path)"
            rc = sd_journal_open_directory(&opened, path, 0)
        case .files(let paths):
            name = "the journal files \(paths.joined(separator: ", "))"
            let copies = paths.map { strdup($0) }
            defer { copies.forEach { free($0) } }
            var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) } + [nil]
            rc = sd_journal_open_files(&opened, &pointers, 0)
        }
        guard rc >= 0, let opened else {
            throw JournaldError(.cannotOpen, "cannot open \(name): \(Self.describe(rc)); check that it exists and that Ferry's user may read it")
        }
        _ = sd_journal_set_data_threshold(opened, 0)
        let fd = sd_journal_get_fd(opened)
        guard fd >= 0 else {
            sd_journal_close(opened)
            throw JournaldError(.cannotOpen, "cannot watch \(name) for new entries: \(Self.describe(fd)); raise fs.inotify.max_user_instances or max_user_watches")
        }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let error = errno
            sd_journal_close(opened)
            throw JournaldError(.cannotOpen, "cannot make a pipe for \(name): \(String(cString: strerror(error))); raise the open files limit")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        handle = opened
        journalFD = fd
        stopPipe = (ends[0], ends[1])
    }

    deinit {
        sd_journal_close(handle)
        close(stopPipe.read)
        close(stopPipe.write)
    }

    // MARK: - Matches

    /// Applies `steps` (see `JournalFilter`).
    func addMatches(_ steps: [JournalFilter.Step]) throws(JournaldError) {
        for step in steps {
            let rc: Int32
            switch step {
            case .match(let match): rc = match.withCString { sd_journal_add_match(handle, $0, strlen($0)) }
            case .disjunction: rc = sd_journal_add_disjunction(handle)
            case .conjunction: rc = sd_journal_add_conjunction(handle)
            }
            guard rc >= 0 else {
                throw JournaldError(.invalidConfiguration, "sd-journal refused the filter \(step): \(Self.describe(rc)); check the units, identifiers and matches")
            }
        }
    }

    /// Removes every match; the position is kept.
    func flushMatches() { sd_journal_flush_matches(handle) }

    // MARK: - Position

    func seekHead() { _ = sd_journal_seek_head(handle) }

    func seekTail() { _ = sd_journal_seek_tail(handle) }

    /// Seeks to `cursor`'s location; false when the cursor cannot be parsed. The next `next()` lands on the
    /// cursor's entry if the journal still has it, else on the first entry after its location.
    func seek(cursor: String) -> Bool { sd_journal_seek_cursor(handle, cursor) >= 0 }

    /// Moves to the next entry that passes the matches: true if there is one. Throws when sd-journal fails.
    func next() throws(JournaldError) -> Bool {
        let rc = sd_journal_next(handle)
        guard rc >= 0 else { throw JournaldError(.journalFailed, "reading \(name) failed: \(Self.describe(rc)); `journalctl --verify` checks its files") }
        return rc > 0
    }

    /// Moves to the previous entry: true if there is one.
    func previous() -> Bool { sd_journal_previous(handle) > 0 }

    /// Whether the current entry is the one `cursor` names.
    func isAt(cursor: String) -> Bool { sd_journal_test_cursor(handle, cursor) > 0 }

    /// The current entry's cursor.
    func cursor() throws(JournaldError) -> String {
        var text: UnsafeMutablePointer<CChar>?
        let rc = sd_journal_get_cursor(handle, &text)
        guard rc >= 0, let text else { throw JournaldError(.journalFailed, "cannot get the cursor of an entry of \(name): \(Self.describe(rc))") }
        defer { free(text) }
        return String(cString: text)
    }

    // MARK: - The current entry

    /// The current entry's realtime timestamp (µs since the epoch, when journald received it).
    func realtime() -> UInt64? {
        var usec: UInt64 = 0
        return sd_journal_get_realtime_usec(handle, &usec) >= 0 ? usec : nil
    }

    /// Calls `body` with each field of the current entry, `NAME=value`, valid only during the call. Returns
    /// false when sd-journal could not read every field (a damaged or unsupported data object); the fields
    /// read before it were given.
    func forEachField(_ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        var data: UnsafeRawPointer?
        var length = 0
        while true {
            let rc = sd_journal_enumerate_data(handle, &data, &length)
            if rc == 0 { return true }
            // sd-journal versions differ in whether a failing field is stepped over; stop at the first.
            guard rc > 0, let data else { return false }
            body(UnsafeRawBufferPointer(start: data, count: length))
        }
    }

    // MARK: - Waiting

    /// Blocks until the journal changes or `stop()` is called: `poll` on the journal's inotify descriptor and
    /// the stop pipe, with sd-journal's own timeout (none on local file systems, so a quiet journal costs no
    /// wake-up), then `sd_journal_process`. This is `sd_journal_wait` plus a way out.
    func wait() -> Change {
        while true {
            var timeout: UInt64 = 0
            _ = sd_journal_get_timeout(handle, &timeout)
            var fds = [
                pollfd(fd: journalFD, events: Int16(truncatingIfNeeded: sd_journal_get_events(handle)), revents: 0),
                pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0),
            ]
            let rc = poll(&fds, 2, Self.milliseconds(until: timeout))
            if rc < 0 && errno == EINTR { continue }
            if fds[1].revents != 0 { return .stopped }
            switch sd_journal_process(handle) {
            case Int32(SD_JOURNAL_INVALIDATE): return .invalidated
            default: return .appended
            }
        }
    }

    /// Makes every `wait()`, current and future, return `.stopped`. Any thread.
    func stop() {
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)  // non-blocking: a full pipe is readable already
    }

    /// `poll`'s timeout for sd-journal's absolute CLOCK_MONOTONIC deadline (`UInt64.max`: none).
    private static func milliseconds(until deadline: UInt64) -> Int32 {
        guard deadline != UInt64.max else { return -1 }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowUsec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        guard deadline > nowUsec else { return 0 }
        return Int32(clamping: (deadline - nowUsec + 999) / 1000)
    }

    /// `-errno` from sd-journal as text.
    static func describe(_ rc: Int32) -> String { "\(String(cString: strerror(-rc))) (errno \(-rc))" }
}
