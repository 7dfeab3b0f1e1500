package import FerryQueue
package import Logging
import ServiceLifecycle

/// The loop every concurrent output runs: take a slot, lease the next records (damaged ones go to
/// `dead`), and hand the good ones to `deliver` in a task of their own that holds the slot until it
/// returns. With nothing to lease it waits for the next append, for records given back or for the stop
/// (`waitForRecords`), at most `idleWait`: an output whose `proceed` can turn false without a commit
/// passes a short one. A failed lease is retried a second later. Ends when Ferry stops, when `proceed`
/// says no, or when the slots are closed; closes them.
///
/// `pace`, when given, runs before each delivery starts (a rate limit), in the loop. With `freshLane`,
/// every `every`-th lease takes the newest records when the queue holds a backlog older than
/// `backlogAge` (see `Queue.lease`), so fresh events of a live link are not starved by a replay.
package func leaseAndDeliver(
    from consumer: Consumer, maxBytes: Int, maxEvents: Int, slots: Slots, logger: Logger,
    group: inout DiscardingTaskGroup,
    freshLane: FreshLane? = nil,
    while proceed: () -> Bool = { true },
    pace: (([StoredRecord]) async -> Void)? = nil,
    idleWait: Duration = Consumer.idleWait,
    deliver: @escaping @Sendable ([StoredRecord]) async -> Void
) async {
    var turn = 0
    while !Task.isCancelled && !Task.isShuttingDownGracefully && proceed() {
        guard await slots.acquire() else { break }
        let token = consumer.queue.waitToken
        let lease: Lease
        do {
            turn += 1
            let fresh = freshLane.flatMap { turn % $0.every == 0 ? $0.backlogAge : nil }
            lease = try consumer.lease(maxRecords: 4096, maxBytes: maxBytes, maxEvents: maxEvents, freshIfBacklogOlderThan: fresh)
        } catch {
            logger.error("cannot lease records", metadata: ["ferry.output.error": "\(error)"])
            slots.release()
            try? await Task.sleep(for: .seconds(1))  // the queue failed; retry its read later
            continue
        }
        if !lease.corrupt.isEmpty {
            _ = try? await consumer.moveToDead(lease.corrupt.map(\.sequence), reason: "damaged record: \(lease.corrupt[0].error.message)")
        }
        guard !lease.records.isEmpty else {
            slots.release()
            await consumer.waitForRecords(since: token, timeout: idleWait)
            continue
        }
        await pace?(lease.records)
        group.addTask {
            defer { slots.release() }
            await deliver(lease.records)
        }
    }
    slots.close()
}

/// How often an output leases from the newest end while a backlog drains: every `every`-th lease, when the
/// oldest waiting record is `backlogAge` older than the newest.
package struct FreshLane: Sendable, Hashable {
    package var every: Int
    package var backlogAge: Duration

    package init(every: Int, backlogAge: Duration) {
        self.every = max(1, every)
        self.backlogAge = backlogAge
    }
}

extension Consumer {
    /// How long an idle output waits for records before it looks again anyway. Appends, records given back
    /// and the start of a stop wake it before that; the bound only covers what changes without a commit.
    package static let idleWait = Duration.seconds(30)

    /// Waits as `waitForAppend(since:timeout:)` (`token`: `queue.waitToken`, read before the lease that
    /// found nothing), and returns at once when Ferry begins to stop, so an idle output neither polls nor
    /// holds a stop back. The stop wakes every waiter (`wakeWaiters`); one that begins it after the stop
    /// began has its handler run at once, which changes the wake-up count its token is checked against.
    package func waitForRecords(since token: UInt64, timeout: Duration = Consumer.idleWait) async {
        await withGracefulShutdownHandler {
            await waitForAppend(since: token, timeout: timeout)
        } onGracefulShutdown: {
            queue.wakeWaiters()
        }
    }
}
