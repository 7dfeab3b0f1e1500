@testable import FerryForward
import Testing

/// `max_events_per_second` as a value: exact, with the time given.
@Suite struct TokenBucketTests {
    let t0 = ContinuousClock.now

    @Test func aSecondsWorthGoesAtOnceAndTheRestWaitsItsShare() {
        var bucket = TokenBucket(eventsPerSecond: 1000, now: t0)
        #expect(bucket.take(1000, now: t0) == .zero)
        #expect(bucket.take(500, now: t0) == .milliseconds(500))
        // 250 ms later 250 tokens came back; the debt of 500 becomes 250, and 250 more wait 500 ms.
        #expect(bucket.take(250, now: t0 + .milliseconds(250)) == .milliseconds(500))
    }

    @Test func idleTimeRefillsNoMoreThanOneSecond() {
        var bucket = TokenBucket(eventsPerSecond: 100, now: t0)
        #expect(bucket.take(100, now: t0) == .zero)
        #expect(bucket.take(100, now: t0 + .seconds(3600)) == .zero)
        #expect(bucket.take(50, now: t0 + .seconds(3600)) == .milliseconds(500))
    }

    @Test func aTimeBeforeTheLastAddsNothing() {
        var bucket = TokenBucket(eventsPerSecond: 10, now: t0 + .seconds(10))
        #expect(bucket.take(10, now: t0 + .seconds(10)) == .zero)
        #expect(bucket.take(5, now: t0) == .milliseconds(500))
    }
}
