import FerryPipeline

/// The balancer's decisions about downstream hosts — which host gets the next request, when a failed
/// host may be tried again, when its circuit opens — as a state machine without I/O and without a clock:
/// every call takes `now`, and jitter comes from an injected random source, so tests are exact.
///
/// Choice follows Logstash's rule and improves on it: hosts without a recent error first, then the
/// least concurrently used, then the least recently used. A failed host cools off for an exponential
/// backoff with full jitter (`Retry-After` when the host sent one and it is longer); after
/// `failuresToOpen` consecutive failures its circuit is open, and when the backoff ends it gets one
/// probe request at a time (half-open) until one succeeds. Throughput weighting comes from the
/// least-in-flight rule: a host that answers faster has fewer requests in flight and is chosen more.
package struct HostPool: Sendable {
    package struct Configuration: Sendable, Hashable {
        /// Requests in flight to one host at most.
        package var maxInFlightPerHost: Int = 4
        /// First backoff; doubles with each consecutive failure, up to `backoffCap`.
        package var backoffBase: Duration = .milliseconds(100)
        package var backoffCap: Duration = .seconds(30)
        /// Consecutive failures after which the circuit opens (one probe at a time).
        package var failuresToOpen: Int = 3
        /// How long an error counts as "recent" for the choice order.
        package var recentErrorWindow: Duration = .seconds(30)
        /// Hedging: a request unanswered for `hedgeFactor` × the slowest usual latency (at least
        /// `hedgeFloor`; `hedgeBeforeAnyAnswer` while no host has answered yet) goes to a second host too.
        package var hedgeFactor: Double = 3
        package var hedgeFloor: Duration = .milliseconds(200)
        package var hedgeBeforeAnyAnswer: Duration = .seconds(1)

        package init() {}
    }

    package enum State: String, Sendable, Hashable {
        /// No failure pending: takes requests.
        case healthy
        /// Failed recently; not used until its backoff ends.
        case cooling
        /// Failed `failuresToOpen` times in a row: one probe at a time once its backoff ends.
        case open
    }

    package struct Host: Sendable, Hashable {
        package let endpoint: String
        package var inFlight = 0
        package var lastUsed: ContinuousClock.Instant?
        package var consecutiveFailures = 0
        package var lastErrorAt: ContinuousClock.Instant?
        package var lastError: String?
        package var availableAt: ContinuousClock.Instant?
        /// Requests sent (hedges included), succeeded, failed; hedges: second copies of a slow request.
        package var hedges: UInt64 = 0
        package var sent: UInt64 = 0
        package var succeeded: UInt64 = 0
        package var failed: UInt64 = 0
        /// Exponentially weighted latency of successful requests, in seconds.
        package var latency: Double?
    }

    package let configuration: Configuration
    package private(set) var hosts: [Host]
    /// Returns a random value in the range: the jitter source (`Double.random(in:)` in production).
    private let random: @Sendable (ClosedRange<Double>) -> Double

    package init(endpoints: [String], configuration: Configuration = Configuration(),
                 random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) {
        precondition(!endpoints.isEmpty, "a host pool needs at least one host")
        self.hosts = endpoints.map { Host(endpoint: $0) }
        self.configuration = configuration
        self.random = random
    }

    package func state(of index: Int, now: ContinuousClock.Instant) -> State {
        let host = hosts[index]
        guard let availableAt = host.availableAt, host.consecutiveFailures > 0 else { return .healthy }
        if host.consecutiveFailures >= configuration.failuresToOpen { return .open }
        return availableAt > now ? .cooling : .healthy
    }

    private func canTake(_ index: Int, now: ContinuousClock.Instant) -> Bool {
        let host = hosts[index]
        if let availableAt = host.availableAt, availableAt > now { return false }
        let limit = host.consecutiveFailures >= configuration.failuresToOpen ? 1 : configuration.maxInFlightPerHost
        return host.inFlight < limit
    }

    /// Picks a host for the next request and counts it as in flight; nil when none can take one now.
    /// `avoiding` (the host that just failed this request) is skipped when another host can take it.
    package mutating func choose(now: ContinuousClock.Instant, avoiding: Int? = nil) -> Int? {
        var candidates = hosts.indices.filter { canTake($0, now: now) }
        if let avoiding, candidates.count > 1 { candidates.removeAll { $0 == avoiding } }
        let window = configuration.recentErrorWindow
        let chosen = candidates.min { a, b in
            let ha = hosts[a], hb = hosts[b]
            let ea = ha.lastErrorAt.map { now - $0 < window } ?? false
            let eb = hb.lastErrorAt.map { now - $0 < window } ?? false
            if ea != eb { return !ea }
            if ha.inFlight != hb.inFlight { return ha.inFlight < hb.inFlight }
            switch (ha.lastUsed, hb.lastUsed) {
            case (nil, nil): return a < b
            case (nil, _): return true
            case (_, nil): return false
            case let (x?, y?): return x < y
            }
        }
        guard let chosen else { return nil }
        hosts[chosen].inFlight += 1
        hosts[chosen].lastUsed = now
        hosts[chosen].sent += 1
        return chosen
    }

    /// A host other than `original` to send a copy of its unanswered request to, counted as in flight:
    /// one that is healthy and has room. nil when there is none.
    package mutating func chooseHedge(now: ContinuousClock.Instant, otherThan original: Int) -> Int? {
        let candidates = hosts.indices.filter { $0 != original && canTake($0, now: now) && state(of: $0, now: now) == .healthy }
        guard let chosen = candidates.min(by: { hosts[$0].inFlight < hosts[$1].inFlight }) else { return nil }
        hosts[chosen].inFlight += 1
        hosts[chosen].lastUsed = now
        hosts[chosen].sent += 1
        hosts[chosen].hedges += 1
        return chosen
    }

    /// How long a request may go unanswered before it is hedged (see `Configuration.hedgeFactor`).
    package func hedgeDelay() -> Duration {
        guard let slowest = hosts.compactMap(\.latency).max() else { return configuration.hedgeBeforeAnyAnswer }
        return max(configuration.hedgeFloor, .seconds(slowest * configuration.hedgeFactor))
    }

    /// The request to `index` succeeded after `latency`.
    package mutating func succeeded(_ index: Int, now: ContinuousClock.Instant, latency: Duration) {
        hosts[index].inFlight -= 1
        hosts[index].succeeded += 1
        hosts[index].consecutiveFailures = 0
        hosts[index].availableAt = nil
        let seconds = latency.inSeconds
        hosts[index].latency = hosts[index].latency.map { 0.8 * $0 + 0.2 * seconds } ?? seconds
    }

    /// The request to `index` failed in a retriable way; returns when the host may be tried again.
    @discardableResult
    package mutating func failed(_ index: Int, now: ContinuousClock.Instant, error: String, retryAfter: Duration? = nil) -> ContinuousClock.Instant {
        hosts[index].inFlight -= 1
        hosts[index].failed += 1
        hosts[index].consecutiveFailures += 1
        hosts[index].lastErrorAt = now
        hosts[index].lastError = error
        let delay = max(backoff(failures: hosts[index].consecutiveFailures), retryAfter ?? .zero)
        let until = now + delay
        hosts[index].availableAt = until
        return until
    }

    /// A request to `index` ended without an answer that says anything about the host (the request
    /// itself was refused permanently, or the balancer is stopping).
    package mutating func finished(_ index: Int) {
        hosts[index].inFlight -= 1
    }

    /// Full jitter: uniform in [0, min(cap, base × 2^(failures-1))].
    package func backoff(failures: Int) -> Duration {
        Backoff(base: configuration.backoffBase, cap: configuration.backoffCap).delay(attempt: failures, random: random)
    }

    /// When the next host becomes available, if none can take a request now; nil if one can now, or if
    /// every host is only full (in flight), not cooling.
    package func nextAvailable(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        if hosts.indices.contains(where: { canTake($0, now: now) }) { return nil }
        return hosts.compactMap { host in host.availableAt.flatMap { $0 > now ? $0 : nil } }.min()
    }
}
