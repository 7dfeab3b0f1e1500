public import Foundation
import Synchronization

/// A child process whose standard output is collected line by line, for tests that kill it mid-work.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private let output = Mutex<(lines: [String], partial: [UInt8], closed: Bool)>(([], [], false))
    private let readerDone = DispatchSemaphore(value: 0)

    /// Starts `executable` with `arguments`; its stderr goes to `stderrPath` (appended) or, without one,
    /// to this process's stderr. The child gets `environment` if given (the whole of it), else this
    /// process's: tests that set a variable for one child must not `setenv` in a process shared by
    /// parallel tests.
    public init(executable: String, arguments: [String], stderrPath: String? = nil, environment: [String: String]? = nil) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw POSIXError(.EIO) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        // Close every other descriptor in the child: a long-lived child that inherits the write end of
        // another child's pipe (a curl's stdin, say) keeps that pipe open, and its reader waits forever.
        // (glibc ≥ 2.34 has posix_spawn_file_actions_addclosefrom_np; Swift's Glibc module does not export it.)
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
        }
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        // Start the child with no blocked signal and default dispositions, as a shell would. A spawned
        // process inherits the spawning thread's signal mask, and the test process's threads block
        // SIGTERM and SIGINT (signal handling through dispatch sources): a child such as rsyslogd, which
        // waits for signals with pselect and its inherited mask, would never see the SIGTERM sent to it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let rc: Int32
        if let envp {
            rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        } else {
            rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)
        }
        self.pid = pid
        let readFD = fds[0]
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(readFD, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                output.withLock { state in
                    state.partial += buffer[..<n]
                    while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                        state.lines.append(String(decoding: state.partial[..<newline], as: UTF8.self))
                        state.partial.removeSubrange(...newline)
                    }
                }
            }
            close(readFD)
            output.withLock { $0.closed = true }
            readerDone.signal()
        }
        thread.start()
    }

    /// Complete lines printed so far (a line cut by a kill is not included).
    public var lines: [String] { output.withLock { $0.lines } }

    /// Waits until `condition` holds for the lines printed so far, or the output closes, or `timeout` passes.
    /// Returns whether the condition held.
    @discardableResult
    public func waitForLines(timeout: Duration, _ condition: ([String]) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (lines, closed) = output.withLock { ($0.lines, $0.closed) }
            if condition(lines) { return true }
            if closed { return false }
            try await Task.sleep(for: .milliseconds(2))  // polling interval of a condition with a deadline
        }
        return false
    }

    /// Sends `signal` and reaps the process; waits until its output is fully read. Returns the wait status.
    @discardableResult
    public func kill(_ signal: Int32 = SIGKILL) -> Int32 {
        _ = Foundation.kill(pid, signal)
        return waitForExit()
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit; if it has not, kills it with
    /// SIGKILL. Returns the wait status after `signal`, or nil when it had to be killed.
    public func stop(_ signal: Int32 = SIGTERM, timeout: Duration) async throws -> Int32? {
        _ = Foundation.kill(pid, signal)
        if let status = try await waitForExit(timeout: timeout) { return status }
        _ = Foundation.kill(pid, SIGKILL)
        _ = try await onThread { [self] in waitForExit() }
        return nil
    }

    /// Reaps the process if it exits within `timeout` and returns its wait status once its output is
    /// fully read; nil, with the process left running, when it does not (the caller kills it): a test
    /// never waits for a hung child forever.
    public func waitForExit(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid {
                try await onThread { [readerDone] in readerDone.wait() }
                return status
            }
            if rc < 0 && errno != EINTR { return nil }
            if ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(10))  // polling interval of a condition with a deadline
        }
    }

    /// Reaps the process and waits until its output is fully read. Returns the wait status.
    @discardableResult
    public func waitForExit() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        readerDone.wait()
        return status
    }
}

/// The directory holding the package's built executables (next to the test bundle), or `FERRY_BIN_DIR`.
public func builtProductsDirectory() -> String {
    if let dir = ProcessInfo.processInfo.environment["FERRY_BIN_DIR"] { return dir }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // On Linux the test runner is `<bin>/<Package>PackageTests.xctest`; on macOS it is inside the bundle.
    while url.path != "/" && url.lastPathComponent.hasSuffix(".xctest") == false && !FileManager.default.fileExists(atPath: url.appendingPathComponent("ferry-crash-appender").path) {
        url.deleteLastPathComponent()
    }
    return url.path
}
