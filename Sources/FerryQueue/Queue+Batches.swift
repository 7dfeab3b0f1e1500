// Remembered batches: the boundaries of a lease, kept durably until its records are gone, so that a
// restart sends the same records under the same `Ferry-Batch` id instead of regrouping them.
//
// Without them, an agent killed while requests were in flight leases those records again after the
// restart in whatever groups the queue then yields (usually larger ones, the backlog having grown):
// the ids are new, and a receiver that already stored the first attempt stores them again.

extension Queue {
    /// Records that the leased `sequences` (ascending) of the default consumer go downstream as one batch:
    /// until every one of them is settled, a restart or a `release` leases them again as exactly this
    /// batch. Returns once that is durable (one group commit). Returns false and records nothing when
    /// the lease has gaps (records between its first and last that it does not hold, e.g. released
    /// records handed out with newer ones while others are in flight) or overlaps a remembered batch:
    /// its bounds alone would not say which records it held.
    @discardableResult
    public func remember(_ sequences: [UInt64]) async throws(QueueError) -> Bool {
        try await defaultConsumer.remember(sequences)
    }

    /// `remember` for consumer `id`: batches are kept per consumer (`batches`, key id · first sequence,
    /// value last sequence · `note`). `note` is the output's own record of where the batch went (the file
    /// output's file, offset and length), read back with `rememberedBatch(consumer:startingAt:)`.
    func remember(consumer id: UInt32, _ sequences: [UInt64], note: [UInt8] = []) async throws(QueueError) -> Bool {
        guard let first = sequences.first, let last = sequences.last, first <= last else { return false }
        let batch = first...last
        guard leases.withLock({ $0[id]?.add(batch) ?? false }) else { return false }
        let count = sequences.count
        let stored: Bool
        do {
            stored = try await perform(weight: 0) { context throws -> Bool in
                guard let table = context.databases.batches, let c = context.consumers.firstIndex(where: { $0.id == id }) else { return false }
                // Exactly the lease's records between its bounds: nothing else leased or waiting there.
                let cursor = try context.txn.cursor(context.databases.records)
                var found = 0
                var entry = try withSequenceKey(first) { try cursor.seek($0) }
                while let current = entry, let sequence = sequence(fromKey: current.key), sequence <= last, found <= count {
                    if !context.consumers[c].isDone(sequence) { found += 1 }
                    entry = try cursor.next()
                }
                guard found == count else { return false }
                var value = withUnsafeBytes(of: last.bigEndian) { Array($0) }
                value += note
                try withConsumerKey(id, first) { key in try value.withUnsafeBytes { try context.txn.put(table, key, $0) } }
                return true
            }
        } catch {
            leases.withLock { _ = $0[id]?.forget(batch) }
            throw error
        }
        if !stored { leases.withLock { _ = $0[id]?.forget(batch) } }
        return stored
    }

    /// The batches `consumer` remembered in the last run, ascending; deletes the entries none of whose
    /// records it still has to settle.
    static func rememberedBatches(_ txn: Transaction, databases: Databases, consumer: ConsumerState) throws -> [ClosedRange<UInt64>] {
        guard let table = databases.batches else { return [] }
        var found: [ClosedRange<UInt64>] = []
        var empty: [UInt64] = []
        let cursor = try txn.cursor(table)
        var entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
        while let current = entry, let key = consumerKey(current.key), key.id == consumer.id, let last = rememberedLast(current.value) {
            if key.sequence <= last, try holdsPending(txn, databases: databases, key.sequence...last, consumer) {
                found.append(key.sequence...last)
            } else {
                empty.append(key.sequence)
            }
            entry = try cursor.next()
        }
        for first in empty {
            _ = try withConsumerKey(consumer.id, first) { try txn.delete(table, $0) }
        }
        return found
    }

    /// In the writer: deletes consumer `c`'s entries of `batches` none of whose records it still has to
    /// settle; returns those.
    static func forgetFinished(_ batches: [ClosedRange<UInt64>], consumer c: Int, _ context: inout WriteContext) throws -> [ClosedRange<UInt64>] {
        guard let table = context.databases.batches else { return [] }
        var finished: [ClosedRange<UInt64>] = []
        let consumer = context.consumers[c]
        for batch in batches where try !holdsPending(context.txn, databases: context.databases, batch, consumer) {
            _ = try withConsumerKey(consumer.id, batch.lowerBound) { try context.txn.delete(table, $0) }
            finished.append(batch)
        }
        return finished
    }

    /// Replaces the note of the batch consumer `id` remembered that starts at `first` (it went elsewhere
    /// than its note said). Returns false when there is no such batch. Durable on return.
    func renote(consumer id: UInt32, startingAt first: UInt64, note: [UInt8]) async throws(QueueError) -> Bool {
        try await perform(weight: 0) { context throws -> Bool in
            guard let table = context.databases.batches,
                  let last = try withConsumerKey(id, first, { try context.txn.get(table, $0).flatMap(rememberedLast) }) else { return false }
            let value = withUnsafeBytes(of: last.bigEndian) { Array($0) } + note
            try withConsumerKey(id, first) { key in try value.withUnsafeBytes { try context.txn.put(table, key, $0) } }
            return true
        }
    }

    /// The batch consumer `id` remembered that starts at `first`: its last sequence and its note; nil when
    /// there is none (never remembered, or all of its records settled).
    func rememberedBatch(consumer id: UInt32, startingAt first: UInt64) throws(QueueError) -> (last: UInt64, note: [UInt8])? {
        try read { txn in
            guard let table = databases.batches,
                  let value = try withConsumerKey(id, first, { try txn.get(table, $0) }),
                  let last = rememberedLast(value) else { return nil }
            return (last, Array(value[8...]))
        }
    }

    /// True when a record of `batch` is stored and not settled by `consumer`.
    private static func holdsPending(_ txn: Transaction, databases: Databases, _ batch: ClosedRange<UInt64>, _ consumer: ConsumerState) throws -> Bool {
        let cursor = try txn.cursor(databases.records)
        var entry = try withSequenceKey(batch.lowerBound) { try cursor.seek($0) }
        while let current = entry, let sequence = sequence(fromKey: current.key), sequence <= batch.upperBound {
            if !consumer.isDone(sequence) { return true }
            entry = try cursor.next()
        }
        return false
    }
}

/// The last sequence of a remembered batch: the first 8 bytes of its value (a note may follow).
func rememberedLast(_ value: UnsafeRawBufferPointer) -> UInt64? {
    guard value.count >= 8 else { return nil }
    return UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))
}
