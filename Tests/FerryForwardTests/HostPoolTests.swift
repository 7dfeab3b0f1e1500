@testable import FerryForward
import Testing

/// The balancer's decisions, with time and jitter injected: exact, no network, no clock.
@Suite struct HostPoolTests {
    let t0 = ContinuousClock.now
    /// Jitter that always takes the top of the range, so backoffs are exact.
    let maxJitter: @Sendable (ClosedRange<Double>) -> Double = { $0.upperBound }

    func pool(_ n: Int = 3, _ configure: (inout HostPool.Configuration) -> Void = { _ in }) -> HostPool {
        var configuration = HostPool.Configuration()
        configure(&configuration)
        return HostPool(endpoints: (0..<n).map { "h\($0):9800" }, configuration: configuration, random: maxJitter)
    }

    @Test func healthyHostsAreUsedInTurnWhenNothingIsInFlight() {
        var p = pool()
        var chosen: [Int] = []
        for i in 0..<6 {
            let now = t0 + .milliseconds(i)
            let host = p.choose(now: now)!
            chosen.append(host)
            p.succeeded(host, now: now, latency: .milliseconds(1))
        }
        #expect(chosen == [0, 1, 2, 0, 1, 2])
    }

    @Test func leastInFlightComesBeforeLeastRecentlyUsed() {
        var p = pool()
        let a = p.choose(now: t0)!  // 0
        let b = p.choose(now: t0 + .milliseconds(1))!  // 1
        p.succeeded(b, now: t0 + .milliseconds(2), latency: .milliseconds(1))
        // Host 0 is still busy; 2 was never used; 1 is free again: 2 (LRU among free), then 1.
        #expect(p.choose(now: t0 + .milliseconds(3)) == 2)
        #expect(p.choose(now: t0 + .milliseconds(4)) == 1)
        #expect(a == 0)
    }

    @Test func aFailedHostCoolsOffWithExponentialBackoffAndIsAvoided() {
        var p = pool(2) { $0.backoffBase = .milliseconds(100); $0.backoffCap = .seconds(1); $0.failuresToOpen = 10 }
        let host = p.choose(now: t0)!
        let until1 = p.failed(host, now: t0, error: "reset")
        #expect(until1 == t0 + .milliseconds(100))
        #expect(p.state(of: host, now: t0 + .milliseconds(50)) == .cooling)
        // While cooling, the other host gets everything, even with requests in flight.
        for i in 0..<3 { #expect(p.choose(now: t0 + .milliseconds(10 + i)) == 1 - host) }
        // Backoff doubles, then stops at the cap.
        var now = t0 + .milliseconds(200)
        var delays: [Duration] = []
        for _ in 0..<5 {
            var again = p
            let chosen = again.choose(now: now, avoiding: 1 - host)
            #expect(chosen == host)
            let until = again.failed(host, now: now, error: "reset")
            delays.append(until - now)
            p = again
            now = until + .milliseconds(1)
        }
        #expect(delays == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
    }

    @Test func fullJitterSpansZeroToTheCeiling() {
        let low = HostPool(endpoints: ["a"], random: { $0.lowerBound }).backoff(failures: 3)
        let high = HostPool(endpoints: ["a"], random: { $0.upperBound }).backoff(failures: 3)
        #expect(low == .zero)
        #expect(high == .milliseconds(400))
    }

    @Test func retryAfterIsHonouredWhenLongerThanTheBackoff() {
        var p = pool(1)
        let host = p.choose(now: t0)!
        let until = p.failed(host, now: t0, error: "HTTP 429", retryAfter: .seconds(5))
        #expect(until == t0 + .seconds(5))
        #expect(p.choose(now: t0 + .seconds(4)) == nil)
        #expect(p.nextAvailable(now: t0 + .seconds(4)) == t0 + .seconds(5))
        #expect(p.choose(now: t0 + .seconds(5)) == 0)
    }

    @Test func theCircuitOpensAfterRepeatedFailuresAndAllowsOneProbe() {
        var p = pool(1) { $0.failuresToOpen = 3; $0.maxInFlightPerHost = 4 }
        var now = t0
        for _ in 0..<3 {
            let host = p.choose(now: now)!
            now = p.failed(host, now: now, error: "refused")
        }
        #expect(p.state(of: 0, now: now) == .open)
        // Half-open: one probe at a time.
        #expect(p.choose(now: now) == 0)
        #expect(p.choose(now: now) == nil)
        p.succeeded(0, now: now, latency: .milliseconds(5))
        #expect(p.state(of: 0, now: now) == .healthy)
        #expect((0..<4).compactMap { _ in p.choose(now: now) }.count == 4)
    }

    @Test func aRequestThatFailedMovesToAnotherHealthyHost() {
        var p = pool(3)
        let first = p.choose(now: t0)!
        p.failed(first, now: t0, error: "reset")
        let retry = p.choose(now: t0 + .milliseconds(500), avoiding: first)
        #expect(retry != nil && retry != first)
    }

    @Test func hostsWithARecentErrorComeLast() {
        var p = pool(2) { $0.backoffBase = .milliseconds(1); $0.backoffCap = .milliseconds(1) }
        let h = p.choose(now: t0)!
        p.failed(h, now: t0, error: "reset")
        // Both free after the backoff, but the one that failed recently is chosen last.
        let now = t0 + .milliseconds(10)
        #expect(p.choose(now: now) == 1 - h)
        // Even with a request in flight, the host without an error still comes first.
        #expect(p.choose(now: now) == 1 - h)
        #expect(p.hosts[1 - h].inFlight == 2)
    }

    @Test func theHedgeDelayFollowsTheSlowestUsualLatencyAboveAFloor() {
        var p = pool()
        #expect(p.hedgeDelay() == .seconds(1), "before any answer")
        let a = p.choose(now: t0)!
        p.succeeded(a, now: t0, latency: .milliseconds(10))
        #expect(p.hedgeDelay() == .milliseconds(200), "3 × 10 ms is under the floor")
        let b = p.choose(now: t0)!
        p.succeeded(b, now: t0, latency: .milliseconds(500))
        #expect(p.hedgeDelay() == .milliseconds(1500), "3 × the slowest host's latency")
    }

    @Test func aHedgeGoesOnlyToAnotherHealthyHostWithRoom() {
        var p = pool(3) { $0.maxInFlightPerHost = 1 }
        let original = p.choose(now: t0)!  // 0
        let cooling = p.choose(now: t0)!  // 1
        p.failed(cooling, now: t0, error: "refused")
        let hedge = p.chooseHedge(now: t0, otherThan: original)
        #expect(hedge == 2)
        #expect(p.hosts[2].hedges == 1 && p.hosts[2].inFlight == 1)
        // Host 2 is now full, host 1 cools off, host 0 is the original: no hedge.
        #expect(p.chooseHedge(now: t0, otherThan: original) == nil)
    }

    @Test func statusesAreClassifiedAsLogstashDoes() {
        #expect(SendOutcome.classify(status: 200, body: "", retryAfter: nil) == .delivered)
        #expect(SendOutcome.classify(status: 204, body: "", retryAfter: nil) == .delivered)
        for status in [408, 429, 500, 502, 503, 504] {
            guard case .retriable = SendOutcome.classify(status: status, body: "", retryAfter: nil) else {
                Issue.record("\(status) not retriable")
                continue
            }
        }
        #expect(SendOutcome.classify(status: 429, body: "", retryAfter: "7") == .retriable(reason: "HTTP 429", retryAfter: .seconds(7)))
        #expect(SendOutcome.classify(status: 400, body: "bad", retryAfter: nil) == .permanent(status: 400, body: "bad"))
        #expect(SendOutcome.classify(status: 413, body: "", retryAfter: nil) == .permanent(status: 413, body: ""))
    }

    @Test func endpointsParseLikeLogstashHosts() {
        #expect(Endpoint("10.0.0.1:9801")?.host == "10.0.0.1" && Endpoint("10.0.0.1:9801")?.port == 9801)
        #expect(Endpoint("aggregator")?.port == 9800)
        #expect(Endpoint("[::1]:9801")?.host == "::1")
        #expect(Endpoint("[::1]:9801")?.description == "[::1]:9801")
        #expect(Endpoint("[::1]")?.port == 9800)
        for bad in ["", ":9800", "host:0", "host:99999", "a:b:c", "[::1", "host:x"] {
            #expect(Endpoint(bad) == nil, "accepted \(bad)")
        }
    }
}
