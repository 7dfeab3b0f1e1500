/// What the queue's writer thread says about itself, read without taking its lock (atomics), so that a
/// writer stuck while holding the lock cannot stall the watchdog. Times are `monotonicNanoseconds()`.
package struct WriterHeartbeat: Sendable, Hashable {
    /// Groups the writer has finished (committed or failed) since it started. It only grows.
    package var loops: UInt64
    /// When the writer took the group it is working on now (applying, committing, fsyncing); nil while
    /// it waits for work.
    package var busySince: UInt64?
    /// When the oldest change not yet taken by the writer was submitted; nil when nothing waits.
    package var waitingSince: UInt64?

    package init(loops: UInt64, busySince: UInt64? = nil, waitingSince: UInt64? = nil) {
        self.loops = loops
        self.busySince = busySince
        self.waitingSince = waitingSince
    }
}

/// The watchdog's decision, without I/O and with time injected: ping systemd (`WATCHDOG=1`) only while
/// the event loops answer and the queue's writer makes progress.
///
/// **Event loops.** After each healthy check the driver schedules a probe on every event loop
/// (`sendProbe`). The next check passes only if every loop has run its probe since it was sent, that
/// is within one ping interval; until they have, no new probe is sent and no ping either.
///
/// **Writer.** It makes progress when any of these holds: it finished a group since the last check; it
/// is inside a group that began at most `maxCommit` ago (a commit stuck in a slow fsync on an SD card
/// counts, up to that bound); nothing waits for it (an idle writer sleeps on its condition and has
/// nothing to prove); or what waits for it was submitted at most `maxPickup` ago. A writer that no
/// longer loops — work waiting and not taken, or a group older than `maxCommit` — does not.
///
/// **Timing.** Healthy checks are `timeout / 2` apart (systemd's advice). After a failed check the next
/// one comes `recheck` later (1 s, or the ping interval if shorter), so a loop that was busy for a
/// moment costs a late ping, not a kill; systemd kills only when no ping came for the whole `timeout`.
package struct Watchdog: Sendable {
    package struct Configuration: Sendable, Hashable {
        /// systemd's `WatchdogSec=` (`WATCHDOG_USEC`), in nanoseconds.
        package var timeout: UInt64
        /// The longest a group (apply + commit + fsync) may take and still count as progress. Default
        /// 120 s: the kernel's own `hung_task_timeout_secs`, past which it reports a task stuck in I/O.
        package var maxCommit: UInt64 = 120_000_000_000
        /// The longest submitted work may wait for a writer that is not busy. The writer takes it within
        /// microseconds; 5 s absorbs a starved CPU.
        package var maxPickup: UInt64 = 5_000_000_000

        package init(timeout: UInt64, maxCommit: UInt64 = 120_000_000_000, maxPickup: UInt64 = 5_000_000_000) {
            self.timeout = timeout
            self.maxCommit = maxCommit
            self.maxPickup = maxPickup
        }

        /// The interval between healthy checks and pings: half the timeout.
        package var pingInterval: UInt64 { timeout / 2 }
        /// The interval between checks while unhealthy.
        package var recheckInterval: UInt64 { min(1_000_000_000, pingInterval) }

        /// The watchdog systemd asked for, or nil when it asked for none: `WATCHDOG_USEC` unset, or
        /// `WATCHDOG_PID` set to another process (a child that inherited the variables).
        ///
        /// Throws `.invalidEnvironment` when `WATCHDOG_USEC` is not a positive number of microseconds.
        package static func fromEnvironment(_ environment: (String) -> String? = processEnvironment,
                                            pid: Int32) throws(ServiceError) -> Configuration? {
            guard let value = environment("WATCHDOG_USEC"), !value.isEmpty else { return nil }
            if let owner = environment("WATCHDOG_PID"), !owner.isEmpty, owner != String(pid) { return nil }
            guard let microseconds = UInt64(value), microseconds > 0, microseconds <= UInt64.max / 1000 else {
                throw ServiceError(.invalidEnvironment, "WATCHDOG_USEC=\(value) is not a positive number of microseconds; set WatchdogSec= in the unit, or unset the variable")
            }
            return Configuration(timeout: microseconds * 1000)
        }
    }

    /// Why a check withheld the ping.
    package enum Problem: Sendable, Hashable, CustomStringConvertible {
        /// At least one event loop has not run the probe sent this long ago.
        case eventLoopsSilent(nanoseconds: UInt64)
        /// The writer has been inside one group this long (more than `maxCommit`).
        case commitTooLong(nanoseconds: UInt64)
        /// Work has waited this long for a writer that is not busy (more than `maxPickup`).
        case writerStalled(nanoseconds: UInt64)

        package var description: String {
            switch self {
            case .eventLoopsSilent(let ns): "event loops silent for \(Self.seconds(ns))"
            case .commitTooLong(let ns): "queue commit running for \(Self.seconds(ns))"
            case .writerStalled(let ns): "queue writer idle with work waiting for \(Self.seconds(ns))"
            }
        }

        private static func seconds(_ nanoseconds: UInt64) -> String {
            let tenths = nanoseconds / 100_000_000
            return "\(tenths / 10).\(tenths % 10) s"
        }
    }

    /// What the driver does after a check.
    package struct Decision: Sendable, Hashable {
        /// Send `WATCHDOG=1`.
        package var ping: Bool
        /// Why not, when `ping` is false.
        package var problem: Problem?
        /// Schedule a fresh probe on every event loop now.
        package var sendProbe: Bool
        /// True when health changed since the previous check (the driver logs it and updates STATUS).
        package var changed: Bool
        /// When to check next, in the same clock as `now`.
        package var nextCheck: UInt64

        package init(ping: Bool, problem: Problem?, sendProbe: Bool, changed: Bool, nextCheck: UInt64) {
            self.ping = ping
            self.problem = problem
            self.sendProbe = sendProbe
            self.changed = changed
            self.nextCheck = nextCheck
        }
    }

    package let configuration: Configuration
    private var probeSentAt: UInt64?
    private var lastLoops: UInt64?
    private var healthy = true

    package init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// The first decision: send a probe now and check it one ping interval later. No ping yet, because
    /// nothing has been checked.
    package mutating func start(now: UInt64) -> Decision {
        probeSentAt = now
        return Decision(ping: false, problem: nil, sendProbe: true, changed: false,
                        nextCheck: now + configuration.pingInterval)
    }

    /// Checks the probes at `now`. `eventLoopsAnsweredAt` is the oldest of the loops' latest answers
    /// (nil if some loop never answered); `writer` is the writer's heartbeat read just now.
    package mutating func check(now: UInt64, eventLoopsAnsweredAt: UInt64?, writer: WriterHeartbeat) -> Decision {
        let problem = eventLoopProblem(now: now, answeredAt: eventLoopsAnsweredAt) ?? writerProblem(now: now, writer)
        lastLoops = writer.loops
        let changed = healthy != (problem == nil)
        healthy = problem == nil

        // A new probe only when the last one came back: a stuck loop would queue them up.
        let loopsAnswered = eventLoopProblem(now: now, answeredAt: eventLoopsAnsweredAt) == nil
        if loopsAnswered { probeSentAt = now }
        return Decision(ping: problem == nil, problem: problem, sendProbe: loopsAnswered, changed: changed,
                        nextCheck: now + (problem == nil ? configuration.pingInterval : configuration.recheckInterval))
    }

    private func eventLoopProblem(now: UInt64, answeredAt: UInt64?) -> Problem? {
        guard let sent = probeSentAt else { return nil }
        if let answeredAt, answeredAt >= sent { return nil }
        return .eventLoopsSilent(nanoseconds: now.subtractingClamped(sent))
    }

    private func writerProblem(now: UInt64, _ writer: WriterHeartbeat) -> Problem? {
        if let lastLoops, writer.loops != lastLoops { return nil }
        if let busySince = writer.busySince {
            let age = now.subtractingClamped(busySince)
            return age <= configuration.maxCommit ? nil : .commitTooLong(nanoseconds: age)
        }
        if let waitingSince = writer.waitingSince {
            let age = now.subtractingClamped(waitingSince)
            return age <= configuration.maxPickup ? nil : .writerStalled(nanoseconds: age)
        }
        return nil
    }
}

extension UInt64 {
    /// `self - other`, or 0 when `other` is later: two threads may read the clock in either order.
    func subtractingClamped(_ other: UInt64) -> UInt64 {
        self >= other ? self - other : 0
    }
}
