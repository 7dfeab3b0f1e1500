package import FerryQueue
package import Logging
import ServiceLifecycle

/// The loop every concurrent output runs: take a slot, lease the next records (damaged ones go to
/// `dead`), and hand the good ones to `deliver` in a task of their own that holds the slot until it
/// returns. With nothing to lease it waits for the next append; a failed lease is retried a second
/// later. Ends when Ferry stops, when `proceed` says no, or when the slots are closed; closes them.
///
/// `pace`, when given, runs before each delivery starts (a rate limit), in the loop.
package func leaseAndDeliver(
    from queue: Queue, maxBytes: Int, maxEvents: Int, slots: Slots, logger: Logger,
    group: inout DiscardingTaskGroup,
    while proceed: () -> Bool = { true },
    pace: (([StoredRecord]) async -> Void)? = nil,
    deliver: @escaping @Sendable ([StoredRecord]) async -> Void
) async {
    while !Task.isCancelled && !Task.isShuttingDownGracefully && proceed() {
        guard await slots.acquire() else { break }
        let lease: Lease
        do {
            lease = try queue.lease(maxRecords: 4096, maxBytes: maxBytes, maxEvents: maxEvents)
        } catch {
            logger.error("cannot lease records", metadata: ["ferry.output.error": "\(error)"])
            slots.release()
            try? await Task.sleep(for: .seconds(1))  // the queue failed; retry its read later
            continue
        }
        if !lease.corrupt.isEmpty {
            _ = try? await queue.moveToDead(lease.corrupt.map(\.sequence), reason: "damaged record: \(lease.corrupt[0].error.message)")
        }
        guard !lease.records.isEmpty else {
            slots.release()
            await queue.waitForAppend(timeout: .seconds(1))
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
