package import Logging

/// The watchdog and status driver: checks the probes, pings systemd while healthy, and keeps `STATUS=`
/// current. Runs until its task is cancelled (the agent runs it beside its services and cancels it at
/// shutdown, before sending `STOPPING=1`).
///
/// Wake-ups: one per check (half of `WatchdogSec`, 30 s with the packaged unit's 60 s) plus one task on
/// each event loop; without a watchdog, one per `statusInterval`. A STATUS line rides the ping's
/// datagram and is sent only when its text changed.
package struct ServiceMonitor: Sendable {
    package let notifier: ServiceNotifier
    package let watchdog: Watchdog.Configuration?
    package let eventLoops: EventLoopProbe
    package let writer: @Sendable () -> WriterHeartbeat
    package let status: @Sendable () -> String?
    package let statusInterval: UInt64
    package let logger: Logger
    package let clock: @Sendable () -> UInt64
    package let observe: @Sendable (Watchdog.Decision) -> Void

    /// - Parameters:
    ///   - watchdog: from `Watchdog.Configuration.fromEnvironment`; nil sends no pings.
    ///   - writer: reads the queue writer's heartbeat (lock-free).
    ///   - status: the current one-line status (queue depth, outputs), or nil to leave it.
    ///   - statusInterval: how often the status is refreshed when there is no watchdog, in nanoseconds.
    ///   - observe: sees every watchdog decision (tests).
    package init(notifier: ServiceNotifier, watchdog: Watchdog.Configuration?, eventLoops: EventLoopProbe,
                 writer: @escaping @Sendable () -> WriterHeartbeat, status: @escaping @Sendable () -> String?,
                 statusInterval: UInt64 = 30_000_000_000, logger: Logger,
                 clock: @escaping @Sendable () -> UInt64 = monotonicNanoseconds,
                 observe: @escaping @Sendable (Watchdog.Decision) -> Void = { _ in }) {
        self.notifier = notifier
        self.watchdog = watchdog
        self.eventLoops = eventLoops
        self.writer = writer
        self.status = status
        self.statusInterval = statusInterval
        self.logger = logger
        self.clock = clock
        self.observe = observe
    }

    /// Runs until cancelled.
    package func run() async {
        // The status last delivered: a datagram dropped (EAGAIN on a full socket buffer) is sent again with
        // the next ping instead of being taken as delivered.
        var lastStatus: String?
        func changedStatus(_ text: String?) -> String? {
            guard let text, text != lastStatus else { return nil }
            return text
        }
        func sent(_ delivered: Bool, _ text: String?) {
            if delivered, let text { lastStatus = text }
        }

        guard let configuration = watchdog else {
            while !Task.isCancelled {
                notifier.sendPending()
                if let text = changedStatus(status()) { sent(notifier.notify(.status(text)), text) }
                guard (try? await Task.sleep(for: .nanoseconds(Int64(clamping: statusInterval)))) != nil else { return }
            }
            return
        }

        var machine = Watchdog(configuration)
        var decision = machine.start(now: clock())
        eventLoops.send()
        while !Task.isCancelled {
            let delay = decision.nextCheck.subtractingClamped(clock())
            guard (try? await Task.sleep(for: .nanoseconds(Int64(clamping: delay)))) != nil else { return }
            notifier.sendPending()
            decision = machine.check(now: clock(), eventLoopsAnsweredAt: eventLoops.answeredAt, writer: writer())
            if decision.sendProbe { eventLoops.send() }
            observe(decision)
            if let problem = decision.problem {
                if decision.changed {
                    logger.warning("watchdog ping withheld: systemd restarts Ferry if this lasts", metadata: [
                        "ferry.service.watchdog.problem": "\(problem)",
                        "ferry.service.watchdog.timeout_ms": "\(configuration.timeout / 1_000_000)",
                    ])
                    let text = "watchdog withheld: \(problem)"
                    sent(notifier.notify(.status(text)), text)
                }
            } else {
                if decision.changed {
                    logger.notice("watchdog healthy again")
                }
                let text = changedStatus(status())
                sent(notifier.notify(.watchdog(status: text)), text)
            }
        }
    }
}
