// Remembered batches: the boundaries of a lease, kept durably until its records are gone, so that a
// restart sends the same records under the same `Ferry-Batch` id instead of regrouping them.
//
// Without them, an agent killed while requests were in flight leases those records again after the
// restart in whatever groups the queue then yields (usually larger ones, the backlog having grown):
// the ids are new, and a receiver that already stored the first attempt stores them again.

extension Queue {
    /// Records that the leased `sequences` (ascending) go downstream as one batch: until every one of
    /// them is acknowledged or moved to `dead`, a restart or a `release` leases them again as exactly this
    /// batch. Returns once that is durable (one group commit). Returns false and records nothing when
    /// the lease has gaps (records between its first and last that it does not hold, e.g. released
    /// records handed out with newer ones while others are in flight) or overlaps a remembered batch:
    /// its bounds alone would not say which records it held.
    @discardableResult
    public func remember(_ sequences: [UInt64]) async throws(QueueError) -> Bool {
        guard let first = sequences.first, let last = sequences.last, first <= last else { return false }
        let batch = first...last
        guard leases.withLock({ $0.add(batch) }) else { return false }
        let count = sequences.count
        let stored: Bool
        do {
            stored = try await perform(weight: 0) { context throws -> Bool in
                guard let table = context.databases.batches else { return false }
                // Exactly the lease's records between its bounds: nothing else leased or waiting there.
                let cursor = try context.txn.cursor(context.databases.records)
                var found = 0
                var entry = try withSequenceKey(first) { try cursor.seek($0) }
                while let current = entry, let sequence = sequence(fromKey: current.key), sequence <= last, found <= count {
                    found += 1
                    entry = try cursor.next()
                }
                guard found == count else { return false }
                try withSequenceKey(first) { key in try withSequenceKey(last) { try context.txn.put(table, key, $0) } }
                return true
            }
        } catch {
            leases.withLock { $0.forget(batch) }
            throw error
        }
        if !stored { leases.withLock { $0.forget(batch) } }
        return stored
    }

    /// Batches remembered by the last run, ascending; deletes the entries whose records are all gone.
    static func rememberedBatches(_ txn: Transaction, databases: Databases) throws -> [ClosedRange<UInt64>] {
        guard let table = databases.batches else { return [] }
        var found: [ClosedRange<UInt64>] = []
        var empty: [UInt64] = []
        let cursor = try txn.cursor(table)
        var entry = try cursor.first()
        while let current = entry, let first = sequence(fromKey: current.key), let last = sequence(fromKey: current.value) {
            if first <= last, try holdsRecords(txn, databases: databases, first...last) {
                found.append(first...last)
            } else {
                empty.append(first)
            }
            entry = try cursor.next()
        }
        for first in empty {
            _ = try withSequenceKey(first) { try txn.delete(table, $0) }
        }
        return found
    }

    /// In the writer: deletes the entries of `batches` none of whose records is left; returns those.
    static func forgetFinished(_ batches: [ClosedRange<UInt64>], _ context: inout WriteContext) throws -> [ClosedRange<UInt64>] {
        guard let table = context.databases.batches else { return [] }
        var finished: [ClosedRange<UInt64>] = []
        for batch in batches where try !holdsRecords(context.txn, databases: context.databases, batch) {
            _ = try withSequenceKey(batch.lowerBound) { try context.txn.delete(table, $0) }
            finished.append(batch)
        }
        return finished
    }

    private static func holdsRecords(_ txn: Transaction, databases: Databases, _ batch: ClosedRange<UInt64>) throws -> Bool {
        let cursor = try txn.cursor(databases.records)
        guard let entry = try withSequenceKey(batch.lowerBound, { try cursor.seek($0) }),
              let sequence = sequence(fromKey: entry.key) else { return false }
        return sequence <= batch.upperBound
    }
}
