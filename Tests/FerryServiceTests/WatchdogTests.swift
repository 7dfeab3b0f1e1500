import FerryService
import Testing

/// Exact decisions of the watchdog, time in nanoseconds injected. WatchdogSec=10s: checks 5 s apart while
/// healthy, 1 s apart while not; commits may take 120 s, waiting work must be taken within 5 s.
@Suite struct WatchdogTests {
    static let second: UInt64 = 1_000_000_000
    let s = WatchdogTests.second
    let idle = WriterHeartbeat(loops: 0)

    func started(at now: UInt64 = 1_000 * WatchdogTests.second) -> Watchdog {
        var watchdog = Watchdog(.init(timeout: 10 * WatchdogTests.second))
        let first = watchdog.start(now: now)
        #expect(first == .init(ping: false, problem: nil, sendProbe: true, changed: false, nextCheck: now + 5 * WatchdogTests.second))
        return watchdog
    }

    @Test func pingsAtHalfTheTimeoutWhileLoopsAnswerAndTheWriterIsIdle() {
        var watchdog = started()
        let t0 = 1_000 * s
        // The loops ran the probe sent at t0 a millisecond later.
        let first = watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: t0 + 1_000_000, writer: idle)
        #expect(first == .init(ping: true, problem: nil, sendProbe: true, changed: false, nextCheck: t0 + 10 * s))
        let second = watchdog.check(now: t0 + 10 * s, eventLoopsAnsweredAt: t0 + 5 * s + 1, writer: idle)
        #expect(second == .init(ping: true, problem: nil, sendProbe: true, changed: false, nextCheck: t0 + 15 * s))
    }

    @Test func aLoopThatHasNotRunTheProbeWithholdsThePingAndNoSecondProbeIsQueued() {
        var watchdog = started()
        let t0 = 1_000 * s
        // The latest answer predates the probe sent at t0: some loop is stuck.
        let stuck = watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: t0 - 1, writer: idle)
        #expect(stuck == .init(ping: false, problem: .eventLoopsSilent(nanoseconds: 5 * s), sendProbe: false,
                               changed: true, nextCheck: t0 + 6 * s))
        let never = watchdog.check(now: t0 + 6 * s, eventLoopsAnsweredAt: nil, writer: idle)
        #expect(never == .init(ping: false, problem: .eventLoopsSilent(nanoseconds: 6 * s), sendProbe: false,
                               changed: false, nextCheck: t0 + 7 * s))
        // It answers late: ping at once (before systemd's 10 s are up) and probe again.
        let back = watchdog.check(now: t0 + 7 * s, eventLoopsAnsweredAt: t0 + 6 * s + 500, writer: idle)
        #expect(back == .init(ping: true, problem: nil, sendProbe: true, changed: true, nextCheck: t0 + 12 * s))
        // The next probe counts from t0 + 7 s: an answer from before it is stale.
        let stale = watchdog.check(now: t0 + 12 * s, eventLoopsAnsweredAt: t0 + 6 * s + 500, writer: idle)
        #expect(stale.problem == .eventLoopsSilent(nanoseconds: 5 * s))
    }

    @Test func aCommitInASlowFsyncCountsAsProgressUpToTheBound() {
        var watchdog = started()
        let t0 = 1_000 * s
        var answered = t0 + 1
        func check(_ now: UInt64, _ writer: WriterHeartbeat) -> Watchdog.Decision {
            defer { answered = now + 1 }
            return watchdog.check(now: now, eventLoopsAnsweredAt: answered, writer: writer)
        }
        // One group began at t0 and its fsync has not returned: loops unchanged, busy, younger than 120 s.
        let busy = WriterHeartbeat(loops: 7, busySince: t0, waitingSince: t0 + 1)
        #expect(check(t0 + 5 * s, busy).ping)
        #expect(check(t0 + 60 * s, busy).ping)
        #expect(check(t0 + 120 * s, busy).ping)
        let tooLong = check(t0 + 121 * s, busy)
        #expect(tooLong == .init(ping: false, problem: .commitTooLong(nanoseconds: 121 * s), sendProbe: true,
                                 changed: true, nextCheck: t0 + 122 * s))
        // The fsync returns and the writer finishes the group: progress again.
        let done = check(t0 + 122 * s, WriterHeartbeat(loops: 8))
        #expect(done.ping && done.changed)
    }

    @Test func aWriterThatNoLongerTakesWaitingWorkWithholdsThePing() {
        var watchdog = started()
        let t0 = 1_000 * s
        // Work submitted at t0 + 1 s, writer not busy and not looping.
        let stalled = WriterHeartbeat(loops: 3, waitingSince: t0 + 1 * s)
        #expect(watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: t0 + 1, writer: stalled).ping)  // waited 4 s
        let check = watchdog.check(now: t0 + 10 * s, eventLoopsAnsweredAt: t0 + 5 * s + 1, writer: stalled)
        #expect(check == .init(ping: false, problem: .writerStalled(nanoseconds: 9 * s), sendProbe: true,
                               changed: true, nextCheck: t0 + 11 * s))
    }

    @Test func aWriterThatLoopedSinceTheLastCheckProgressesWhateverItsSnapshotSays() {
        // Read between two groups: not busy, and work waiting since the previous (long) group began. The
        // loop counter moved, so the writer is alive; without it this would read as a stall.
        var watchdog = started()
        let t0 = 1_000 * s
        _ = watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: t0 + 1, writer: WriterHeartbeat(loops: 10, busySince: t0))
        let between = WriterHeartbeat(loops: 11, waitingSince: t0 + 1 * s)
        #expect(watchdog.check(now: t0 + 30 * s, eventLoopsAnsweredAt: t0 + 5 * s + 1, writer: between).ping)
        // The same snapshot again: the counter did not move, the work is 34 s old.
        #expect(watchdog.check(now: t0 + 35 * s, eventLoopsAnsweredAt: t0 + 30 * s + 1, writer: between).problem
            == .writerStalled(nanoseconds: 34 * s))
    }

    @Test func stuckLoopsAreReportedBeforeAStalledWriter() {
        var watchdog = started()
        let t0 = 1_000 * s
        let decision = watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: nil,
                                      writer: WriterHeartbeat(loops: 0, busySince: t0 - 200 * s))
        #expect(decision.problem == .eventLoopsSilent(nanoseconds: 5 * s))
        #expect(!decision.ping)
    }

    @Test func timestampsReadInEitherOrderNeverUnderflow() {
        // The writer stamped busySince after the watchdog read its clock.
        var watchdog = started()
        let t0 = 1_000 * s
        let decision = watchdog.check(now: t0 + 5 * s, eventLoopsAnsweredAt: t0 + 6 * s,
                                      writer: WriterHeartbeat(loops: 0, busySince: t0 + 6 * s, waitingSince: t0 + 7 * s))
        #expect(decision.ping)
    }

    @Test func aShortTimeoutRechecksWithinThePingInterval() {
        var watchdog = Watchdog(.init(timeout: 1 * s))
        _ = watchdog.start(now: 0)
        let decision = watchdog.check(now: s / 2, eventLoopsAnsweredAt: nil, writer: idle)
        #expect(decision.nextCheck == s)  // half a second, not the usual 1 s recheck
    }

    @Test func problemsSayWhatAndHowLong() {
        #expect("\(Watchdog.Problem.eventLoopsSilent(nanoseconds: 12_345_000_000))" == "event loops silent for 12.3 s")
        #expect("\(Watchdog.Problem.commitTooLong(nanoseconds: 121 * s))" == "queue commit running for 121.0 s")
        #expect("\(Watchdog.Problem.writerStalled(nanoseconds: 9 * s))" == "queue writer idle with work waiting for 9.0 s")
    }
}
