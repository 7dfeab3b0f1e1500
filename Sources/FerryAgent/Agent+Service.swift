import FerryQueue
import FerryService
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOPosix
import Synchronization

/// The agent's side of systemd's notify protocol (`Type=notify`): `READY=1` when `/ready` turns 200,
/// `STATUS=` with the queue depth, `WATCHDOG=1` while the event loops answer and the queue writer makes
/// progress, `STOPPING=1` at the graceful shutdown.
///
/// Guarantees: with `NOTIFY_SOCKET` unset nothing is sent and no task runs; a notification that cannot be
/// sent is logged, never fatal. A `NOTIFY_SOCKET` or `WATCHDOG_USEC` that Ferry cannot use is logged at
/// error and ignored (systemd then stops a `Type=notify` unit for not becoming ready, which names the cause).
final class ServiceIntegration: Sendable {
    /// How often `STATUS=` is refreshed without a watchdog (with one, it rides the pings, `WatchdogSec/2`).
    static let statusInterval: UInt64 = 5_000_000_000

    let notifier: ServiceNotifier?
    let monitor: ServiceMonitor?
    private let stoppingSent = Atomic<Bool>(false)

    init(queue: Queue, logger: Logger) {
        let logger = logger.child("ferry.service")
        do {
            guard let notifier = try ServiceNotifier.fromEnvironment(logger: logger) else {
                self.notifier = nil
                self.monitor = nil
                return
            }
            self.notifier = notifier
            var watchdog: Watchdog.Configuration?
            do {
                watchdog = try Watchdog.Configuration.fromEnvironment(pid: getpid())
            } catch {
                logger.error("watchdog not started", metadata: ["ferry.service.error": "\(error.message)"])
            }
            // Hummingbird (ingest, admin), the syslog servers and the HTTP client all run on the singleton group.
            let probe = EventLoopProbe(loops: MultiThreadedEventLoopGroup.singleton.makeIterator().map { loop in { work in loop.execute(work) } })
            monitor = ServiceMonitor(
                notifier: notifier, watchdog: watchdog, eventLoops: probe,
                writer: {
                    guard let beat = queue.writerHeartbeat else { return WriterHeartbeat(loops: 0) }
                    return WriterHeartbeat(loops: beat.finishedGroups, busySince: beat.busySince, waitingSince: beat.waitingSince)
                },
                status: { Self.status(queue.stats) },
                statusInterval: Self.statusInterval, logger: logger)
        } catch {
            logger.error("systemd notifications disabled", metadata: ["ferry.service.error": "\(error.message)"])
            self.notifier = nil
            self.monitor = nil
        }
    }

    /// `STATUS=` text: the queue's depth.
    static func status(_ stats: QueueStats) -> String {
        "running; queue \(stats.records) records, \(stats.events) events, \(stats.bytes) bytes"
    }

    /// `READY=1`, then the watchdog and status loop until the task is cancelled.
    func readyThenMonitor(queue: Queue) async {
        guard let notifier, let monitor else { return }
        notifier.notify(.ready(status: Self.status(queue.stats)))
        await monitor.run()
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`: a SIGHUP's reload begins.
    func reloadBegins() {
        notifier?.notify(.reloading(monotonicMicroseconds: monotonicNanoseconds() / 1000, status: nil))
    }

    /// `READY=1`: the reload is over, applied or refused (a `Type=notify-reload` unit waits for it).
    func reloadEnds() {
        notifier?.notify(.ready(status: nil))
    }

    /// `STOPPING=1`, once however often it is called (first signal, end of the service group).
    func stopping() {
        guard !stoppingSent.exchange(true, ordering: .relaxed) else { return }
        notifier?.notify(.stopping(status: "stopping: finishing requests in flight, undelivered records stay queued"))
    }
}
