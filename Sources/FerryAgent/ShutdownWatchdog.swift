import FerryPipeline
import FoundationEssentials
import Synchronization
#if canImport(Glibc)
import Glibc
import Dispatch
import FerryQueue
#endif

/// Holds the promise of the README in every phase of a stop: once the agent stops, a second SIGTERM or
/// SIGINT, or the shutdown limit, ends the process at once — also after the service group has returned
/// (after `msg=stopped`), while the queue closes, while the process exits.
///
/// Why not in Swift concurrency: what can keep a stopping process alive is exactly what those tools
/// wait on — a continuation nobody resumes, a task nobody cancels, a client shutdown that never ends —
/// and once the agent's signal task is cancelled, libdispatch's signal source still swallows SIGTERM and
/// SIGINT, so a second signal did nothing (issue 20: an agent alive 48 minutes after `stopped`). So, when
/// armed, it installs plain signal handlers that `_exit(130)`, and a thread of its own that `_exit(1)`s
/// when the limit passes. `_exit` loses nothing: acknowledged means fsynced, and a record whose delivery
/// was not acknowledged is delivered again after the next start.
package enum ShutdownWatchdog {
    private static let armed = Atomic<Bool>(false)

    /// Arms the watchdog (once; later calls do nothing): from now on SIGTERM and SIGINT end the process
    /// with status 130, and it ends with status 1 if it still runs `limit` from now.
    package static func arm(limit: Duration) {
        guard armed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        // A handler that only calls async-signal-safe functions: write(2) of a constant and _exit(2).
        let onSignal: @convention(c) (Int32) -> Void = { _ in
            let message: StaticString = "ferry: second signal: exiting now; every acknowledged event is on disk\n"
            _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            _exit(130)
        }
        signal(SIGTERM, onSignal)
        signal(SIGINT, onSignal)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, limit.inNanoseconds))
        OSThread.start(name: "ferry-stop") {
            // Signals may be blocked in the threads libdispatch made; this one takes them.
            var signals = sigset_t()
            sigemptyset(&signals)
            sigaddset(&signals, SIGTERM)
            sigaddset(&signals, SIGINT)
            pthread_sigmask(SIG_UNBLOCK, &signals, nil)
            while true {
                let now = DispatchTime.now().uptimeNanoseconds  // read once: a second reading could pass the deadline
                guard now < deadline else { break }
                let left = deadline - now
                var pause = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
                _ = nanosleep(&pause, nil)  // interrupted by a signal: its handler exits, or the loop goes on
            }
            let message: StaticString = "ferry: the shutdown limit passed: exiting now; every acknowledged event is on disk\n"
            _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            _exit(1)
        }
    }
}
