/// Exponential backoff with full jitter: the one retry delay of Ferry (a failed downstream host, a
/// retried Kafka produce, an input waiting for room in the queue). Pure: the random source is a
/// parameter, so tests are exact.
///
/// Full jitter (a uniform delay in [0, min(cap, base × 2^(attempt-1))]) spreads retries of many
/// senders apart, which a fixed doubling does not.
package struct Backoff: Sendable, Hashable {
    /// The ceiling of the first retry.
    package var base: Duration
    /// The largest ceiling, reached after a few attempts.
    package var cap: Duration

    package init(base: Duration, cap: Duration) {
        self.base = base
        self.cap = max(base, cap)
    }

    /// The ceiling of retry number `attempt` (1 for the first): `min(cap, base × 2^(attempt-1))`.
    package func ceiling(attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        return min(cap, base * (1 << exponent))
    }

    /// The delay before retry number `attempt`: `random(0...ceiling)`, in seconds.
    package func delay(attempt: Int, random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) -> Duration {
        .seconds(random(0...ceiling(attempt: attempt).inSeconds))
    }
}
