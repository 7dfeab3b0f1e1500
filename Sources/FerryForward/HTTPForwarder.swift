package import FerryPipeline
package import FerryQueue
import FerryWire
package import Logging
import NIOCore
package import ServiceLifecycle
import Synchronization

/// The `http` output: leases records oldest first, sends each lease as one request to the host the
/// `HostPool` chooses, and acknowledges (deletes) the records once a host answered 2xx.
///
/// At least once: records are deleted only after a 2xx. A retriable failure retries the same request
/// (same records, same `Ferry-Batch`) on another host that can take it, or on the same host after its
/// backoff; it never gives up while the failure is retriable, so an outage of every host only lets the
/// queue grow. A permanent refusal (4xx other than 408/429) moves the records to `dead` with the status
/// and an excerpt of the answer, and the records after them go on.
package final class HTTPForwarder: Service, Sendable {
    private let consumer: Consumer
    private let configuration: HTTPOutputConfiguration
    private let sender: HTTPSender
    private let pool: Mutex<HostPool>
    private let logger: Logger
    /// Time for host choice, backoffs and hedging: the monotonic clock, or a test's.
    private let clock: OutputClock

    /// The output of the queue's default consumer (tests, tools).
    package convenience init(queue: Queue, configuration: HTTPOutputConfiguration, logger: Logger = Logger(label: "ferry.forward"),
                             clock: OutputClock = .continuous) throws(ConfigurationError) {
        try self.init(consumer: queue.defaultConsumer, configuration: configuration, logger: logger, clock: clock)
    }

    /// An output that delivers what `consumer` (its own cursor in the queue) has not settled.
    /// `clock`: time for host choice, backoffs and hedging (a test's, to step it).
    package init(consumer: Consumer, configuration: HTTPOutputConfiguration, logger: Logger = Logger(label: "ferry.forward"),
                 clock: OutputClock = .continuous) throws(ConfigurationError) {
        self.consumer = consumer
        self.clock = clock
        self.configuration = configuration
        self.sender = try HTTPSender(configuration: configuration)
        var poolConfiguration = HostPool.Configuration()
        poolConfiguration.maxInFlightPerHost = configuration.concurrencyPerHost
        poolConfiguration.backoffBase = .milliseconds(configuration.backoffBaseMilliseconds)
        poolConfiguration.backoffCap = .milliseconds(configuration.backoffCapMilliseconds)
        self.pool = Mutex(HostPool(endpoints: sender.endpoints.map(\.description), configuration: poolConfiguration))
        self.logger = logger
    }

    /// Per-host state and counters, for /metrics and tests.
    package func hostStatus() -> [HostStatus] {
        let now = clock.now()
        return pool.withLock { pool in
            pool.hosts.indices.map { i in
                let host = pool.hosts[i]
                return HostStatus(endpoint: host.endpoint, state: pool.state(of: i, now: now).rawValue, inFlight: host.inFlight,
                                  sent: host.sent, succeeded: host.succeeded, failed: host.failed, hedges: host.hedges,
                                  lastError: host.lastError, latencySeconds: host.latency)
            }
        }
    }

    package func run() async throws {
        let slots = Slots(count: sender.endpoints.count * configuration.concurrencyPerHost)
        // `max_events_per_second`: each request waits for its events' tokens before it starts.
        let pace: (([StoredRecord]) async -> Void)? = configuration.maxEventsPerSecond.map { rate in
            let limiter = RateLimiter(eventsPerSecond: rate, clock: ContinuousClock())
            return { records in await limiter.take(records.reduce(0) { $0 + Int($1.record.eventCount) }) }
        }
        await withDiscardingTaskGroup { group in
            await leaseAndDeliver(from: consumer, maxBytes: configuration.maxRequestBytes, maxEvents: configuration.maxEventsPerRequest,
                                  slots: slots, logger: logger, group: &group, freshLane: configuration.freshLane, pace: pace) { [self] records in
                await deliver(OutboundBatch(records: records, agentID: consumer.queue.agentID))
            }
        }
        await sender.shutdown()
    }

    /// Delivers one batch: until a host takes it, a host refuses it for good, or Ferry stops.
    private func deliver(_ batch: OutboundBatch) async {
        // Before the first attempt: after a crash the same records go again under the same `Ferry-Batch`,
        // which a receiving Ferry drops. Without it only duplicates are risked, never a loss.
        do {
            try await consumer.remember(batch.sequences)
        } catch {
            logger.warning("cannot remember a batch's boundaries; a restart may send its events twice", metadata: ["ferry.forward.error": "\(error)"])
        }
        var avoid: Int?
        while true {
            if Task.isCancelled || Task.isShuttingDownGracefully {
                consumer.release(batch.sequences)  // leased again after a restart; nothing is lost
                return
            }
            let now = clock.now()
            guard let host = pool.withLock({ $0.choose(now: now, avoiding: avoid) }) else {
                // Every host is cooling off or full: wait for the first to come back.
                let next = pool.withLock { $0.nextAvailable(now: now) } ?? now + .milliseconds(20)
                await clock.sleep(min(next, now + .seconds(1)))
                continue
            }
            let (answered, outcome) = await attempt(batch, on: host)
            switch outcome {
            case .delivered:
                do {
                    try await consumer.acknowledge(batch.sequences)
                } catch {
                    // Delivered but not deleted: it will be sent again (the receiver's `seen` drops it).
                    logger.error("delivered records could not be acknowledged", metadata: ["ferry.forward.error": "\(error)"])
                    consumer.release(batch.sequences)
                }
                return
            case .retriable(let reason, _):
                logger.debug("delivery failed, will retry", metadata: [
                    "downstream.host": "\(sender.endpoints[answered])", "ferry.forward.reason": "\(reason)",
                ])
                avoid = answered
            case .permanent(let status, let body):
                let reason = "HTTP \(status) from \(sender.endpoints[answered]): \(body)"
                logger.error("downstream refused records for good; moved to dead", metadata: [
                    "downstream.host": "\(sender.endpoints[answered])", "ferry.forward.status": "\(status)",
                    "ferry.forward.records": "\(batch.sequences.count)",
                ])
                do {
                    try await consumer.moveToDead(batch.sequences, reason: reason)
                } catch {
                    logger.error("refused records could not be moved to dead", metadata: ["ferry.forward.error": "\(error)"])
                    consumer.release(batch.sequences)
                }
                return
            }
        }
    }
}

extension HTTPForwarder {
    private enum AttemptEvent: Sendable {
        case answer(host: Int, start: ContinuousClock.Instant, outcome: SendOutcome)
        case hedgeDue
    }

    /// One attempt at `batch`, starting on `host`, with the pool's bookkeeping done. When no answer came
    /// within the pool's hedge delay and another healthy host has room, the same request (same records,
    /// same `Ferry-Batch`) goes there too: the first 2xx or permanent answer settles the attempt and the
    /// other copy is cancelled; a retriable failure of one copy leaves the other running. When the hedge
    /// was delivered, the host that stayed silent counts as failed (it cools off). Returns the host that
    /// settled it, or the last that failed.
    fileprivate func attempt(_ batch: OutboundBatch, on host: Int) async -> (Int, SendOutcome) {
        let hedging = configuration.hedge && sender.endpoints.count > 1
        return await withTaskGroup(of: AttemptEvent.self) { group in
            let start = clock.now()
            group.addTask { [sender] in .answer(host: host, start: start, outcome: await sender.send(batch, to: host)) }
            if hedging {
                group.addTask { [self] in
                    // The delay follows the latencies as answers come in: re-read it at least every 100 ms.
                    while !Task.isCancelled {
                        let due = start + pool.withLock { $0.hedgeDelay() }
                        let now = clock.now()
                        if now >= due { return .hedgeDue }
                        await clock.sleep(min(due, now + .milliseconds(100)))
                    }
                    return .hedgeDue
                }
            }
            var running = 1
            var settled: (Int, SendOutcome)?
            var lastFailure: (Int, SendOutcome) = (host, .retriable(reason: "no answer", retryAfter: nil))
            while let event = await group.next() {
                switch event {
                case .hedgeDue:
                    guard settled == nil, running == 1, !Task.isCancelled else { continue }
                    let now = clock.now()
                    guard let other = pool.withLock({ $0.chooseHedge(now: now, otherThan: host) }) else {
                        // No other host has room now: look again shortly, while the request waits.
                        group.addTask { [clock] in
                            await clock.sleep(now + .milliseconds(100))
                            return .hedgeDue
                        }
                        continue
                    }
                    running += 1
                    logger.debug("no answer yet, sending the same request to a second host", metadata: [
                        "downstream.host": "\(sender.endpoints[host])", "ferry.forward.hedge_host": "\(sender.endpoints[other])",
                        "ferry.forward.batch": "\(batch.batchID)",
                    ])
                    let hedgeStart = clock.now()
                    group.addTask { [sender] in .answer(host: other, start: hedgeStart, outcome: await sender.send(batch, to: other)) }
                case .answer(let answered, let begun, let outcome):
                    running -= 1
                    let now = clock.now()
                    if let (winner, decided) = settled {
                        // The copy that lost the race, cancelled or answered late. The original host counts
                        // as failed only when the hedge was delivered while it stayed silent.
                        pool.withLock { pool in
                            if case .delivered = outcome {
                                pool.succeeded(answered, now: now, latency: now - begun)
                            } else if answered == host, decided == .delivered {
                                pool.failed(answered, now: now, error: "no answer in time; \(sender.endpoints[winner]) answered the same request")
                            } else {
                                pool.finished(answered)
                            }
                        }
                        continue
                    }
                    switch outcome {
                    case .delivered:
                        pool.withLock { $0.succeeded(answered, now: now, latency: now - begun) }
                        settled = (answered, outcome)
                        group.cancelAll()
                    case .permanent:
                        pool.withLock { $0.finished(answered) }
                        settled = (answered, outcome)
                        group.cancelAll()
                    case .retriable(let reason, let retryAfter):
                        pool.withLock { _ = $0.failed(answered, now: now, error: reason, retryAfter: retryAfter) }
                        lastFailure = (answered, outcome)
                        if running == 0 { group.cancelAll() }
                    }
                }
            }
            return settled ?? lastFailure
        }
    }
}

/// A downstream host's state, as `HTTPForwarder.hostStatus()` reports it.
package struct HostStatus: Sendable, Hashable {
    package let endpoint: String
    /// `healthy`, `cooling` or `open`.
    package let state: String
    package let inFlight: Int
    package let sent: UInt64
    package let succeeded: UInt64
    package let failed: UInt64
    /// Requests this host got as the second copy of a request another host had not answered in time.
    package let hedges: UInt64
    package let lastError: String?
    package let latencySeconds: Double?
}

/// The http output's time: host choice, backoffs and the hedge delay read `now` and wait with `sleep`.
/// The monotonic clock in production (no wall-clock step moves it); tests drive one by hand, so that a
/// hedge after a second takes no second.
package struct OutputClock: Sendable {
    package let now: @Sendable () -> ContinuousClock.Instant
    /// Waits until the instant (or returns early when the task is cancelled).
    package let sleep: @Sendable (ContinuousClock.Instant) async -> Void

    package init(now: @escaping @Sendable () -> ContinuousClock.Instant, sleep: @escaping @Sendable (ContinuousClock.Instant) async -> Void) {
        self.now = now
        self.sleep = sleep
    }

    package static let continuous = OutputClock(now: { .now }, sleep: { try? await Task.sleep(until: $0, clock: .continuous) })
}

/// A token bucket over events, as a value with the time passed in: `take(_:now:)` says how long the
/// events must wait before they go. Holds at most a second's worth of tokens (the burst). Pure, so its
/// tests are exact; `RateLimiter` is its clock and lock.
package struct TokenBucket<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    package let rate: Double
    private var tokens: Double
    private var last: Instant

    package init(eventsPerSecond: Int, now: Instant) {
        rate = Double(max(eventsPerSecond, 1))
        tokens = rate
        last = now
    }

    /// Takes `events` tokens at `now` and returns the wait before they may go (zero when there were
    /// enough). A time before the last one (it cannot happen on a monotonic clock) adds nothing.
    package mutating func take(_ events: Int, now: Instant) -> Duration {
        let elapsed = max(.zero, last.duration(to: now))
        tokens = min(rate, tokens + rate * elapsed.inSeconds)
        if elapsed > .zero { last = now }
        tokens -= Double(events)
        return tokens >= 0 ? .zero : .seconds(-tokens / rate)
    }
}

/// `max_events_per_second`: a `TokenBucket` read and slept on with `clock` (a monotonic one, so a step
/// of the wall clock changes nothing).
final class RateLimiter<C: Clock>: Sendable where C.Duration == Duration, C.Instant: Sendable {
    private let clock: C
    private let bucket: Mutex<TokenBucket<C.Instant>>

    init(eventsPerSecond: Int, clock: C) {
        self.clock = clock
        bucket = Mutex(TokenBucket(eventsPerSecond: eventsPerSecond, now: clock.now))
    }

    func take(_ events: Int) async {
        let now = clock.now
        let wait = bucket.withLock { $0.take(events, now: now) }
        if wait > .zero { try? await clock.sleep(for: wait) }
    }
}
