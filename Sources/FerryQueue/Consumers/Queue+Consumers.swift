import FerryWire

// The writer's side of consumers: settling records for one consumer (acknowledged, buried, dropped because
// it lags), deleting a record once every consumer is done with it, moving watermarks, and the lag policy.
// Everything here runs on the writer thread, inside a child transaction of the group; the consumers'
// rows are written once per group (`persistConsumers`).

/// How a consumer is done with a record.
enum Settlement {
    /// Delivered downstream.
    case delivered
    /// Refused downstream for good: in the consumer's dead set, with why.
    case buried(reason: [UInt8])
    /// Skipped because the consumer lagged (`when_lagging: drop`).
    case droppedLagging
}

extension Queue {
    /// Settles `sequences` for consumer `c`. Sequences already done for it, or no longer stored, are skipped;
    /// a record every consumer is done with is deleted (to `dead` if a consumer buried it). Returns the
    /// records settled.
    static func settle(_ context: inout WriteContext, consumer c: Int, _ sequences: [UInt64], as how: Settlement) throws -> Int {
        var settled = 0
        for sequence in sequences {
            guard !context.consumers[c].isDone(sequence) else { continue }
            let found: (bytes: Int, events: UInt64)? = try withSequenceKey(sequence) { key in
                guard let value = try context.txn.get(context.databases.records, key) else { return nil }
                return (value.count, (try? QueueRecord.header(of: value)).map { UInt64($0.eventCount) } ?? 0)
            }
            guard let (bytes, events) = found else { continue }  // dropped for everyone meanwhile
            context.consumers[c].settled.insert(sequence...sequence)
            context.consumers[c].pendingEvents.subtractClamped(events)
            context.consumers[c].pendingBytes.subtractClamped(UInt64(bytes))
            context.consumers[c].dirty = true
            switch how {
            case .delivered:
                context.consumers[c].deliveredRecords += 1
                context.consumers[c].deliveredEvents += events
            case .buried(let reason):
                context.consumers[c].deadRecords += 1
                context.consumers[c].deadRecordsTotal += 1
                guard let marks = context.databases.deadMarks else { throw QueueError(.readOnly, "the queue has no dead_marks table") }
                let mark = DeadRecord.encodeMark(reason: reason, buriedAt: context.now)
                try withConsumerKey(context.consumers[c].id, sequence) { key in
                    try mark.withUnsafeBytes { try context.txn.put(marks, key, $0) }
                }
            case .droppedLagging:
                context.consumers[c].droppedLaggingEvents += events
            }
            settled += 1
            if context.consumers.allSatisfy({ $0.isDone(sequence) }) {
                try deleteRecord(&context, sequence)
            }
        }
        try advanceWatermark(&context, consumer: c)
        return settled
    }

    /// Deletes record `sequence`, which every consumer is done with: to `dead` when a consumer buried it
    /// (the one copy of it that stays), else counted as delivered (or as dropped, when `dropped`).
    static func deleteRecord(_ context: inout WriteContext, _ sequence: UInt64, dropped: Bool = false) throws {
        let dbs = context.databases
        try withSequenceKey(sequence) { key in
            guard let found = try context.txn.get(dbs.records, key) else { return }
            let value = [UInt8](found)  // copied: the writes below may move pages
            let events = value.withUnsafeBytes { (try? QueueRecord.header(of: $0)).map { UInt64($0.eventCount) } ?? 0 }
            var mark: [UInt8]?
            if let marks = dbs.deadMarks {
                for consumer in context.consumers where mark == nil {
                    mark = try withConsumerKey(consumer.id, sequence) { try context.txn.get(marks, $0).map { [UInt8]($0) } }
                }
            }
            if let mark, let (reason, buriedAt) = DeadRecord.decodeMark(mark) {
                let dead = DeadRecord.encode(reason: reason, buriedAt: buriedAt, record: value)
                try dead.withUnsafeBytes { try context.txn.put(dbs.dead, key, $0) }
                context.state.deadBytes += UInt64(value.count)
                context.state.deadEvents += events
                context.state.deadRecordsTotal += 1
                context.state.deadEventsTotal += events
            } else if dropped {
                context.state.droppedRecords += 1
                context.state.droppedEvents += events
            } else {
                context.state.deliveredRecords += 1
                context.state.deliveredEvents += events
            }
            _ = try context.txn.delete(dbs.records, key)
            context.state.storedBytes.subtractClamped(UInt64(value.count))
            context.state.storedEvents.subtractClamped(events)
        }
    }

    /// Moves consumer `c`'s watermark over everything it is done with: its settled ranges and the gaps
    /// where records are no longer stored.
    static func advanceWatermark(_ context: inout WriteContext, consumer c: Int) throws {
        var watermark = context.consumers[c].watermark
        let cursor = try context.txn.cursor(context.databases.records)
        while true {
            guard let entry = try withSequenceKey(watermark, { try cursor.seek($0) }), let sequence = FerryQueue.sequence(fromKey: entry.key) else {
                watermark = max(watermark, context.state.nextSequence)  // nothing stored at or after it
                break
            }
            if let range = context.consumers[c].settled.range(holding: sequence) {
                watermark = range.upperBound + 1
                continue
            }
            watermark = sequence
            break
        }
        if watermark != context.consumers[c].watermark {
            context.consumers[c].watermark = watermark
            context.consumers[c].settled.removeBelow(watermark)
            context.consumers[c].dirty = true
        }
    }

    /// Deletes `sequence` for everyone (`when_full: drop_oldest`, age): each consumer that had not settled
    /// it counts its events as never delivered. Returns the record's stored bytes, nil when not stored.
    @discardableResult
    static func drop(_ context: inout WriteContext, _ sequence: UInt64) throws -> Int? {
        let found: (bytes: Int, events: UInt64)? = try withSequenceKey(sequence) { key in
            guard let value = try context.txn.get(context.databases.records, key) else { return nil }
            return (value.count, (try? QueueRecord.header(of: value)).map { UInt64($0.eventCount) } ?? 0)
        }
        guard let (bytes, events) = found else { return nil }
        for c in context.consumers.indices where !context.consumers[c].isDone(sequence) {
            context.consumers[c].droppedFullEvents += events
            context.consumers[c].pendingEvents.subtractClamped(events)
            context.consumers[c].pendingBytes.subtractClamped(UInt64(bytes))
            context.consumers[c].settled.insert(sequence...sequence)
            context.consumers[c].dirty = true
        }
        try deleteRecord(&context, sequence, dropped: true)
        return bytes
    }

    /// Records below every consumer's watermark are garbage (left by a consumer that was removed): deletes
    /// up to `limit` of them. Runs with every group; costs one cursor move when there is none.
    /// Returns true when it stopped at `limit` with more to sweep.
    @discardableResult
    static func sweep(_ context: inout WriteContext, limit: Int = 1024) throws -> Bool {
        guard let lowest = context.consumers.map(\.watermark).min() else { return false }
        let cursor = try context.txn.cursor(context.databases.records)
        var swept = 0
        while swept < limit, let entry = try cursor.first(), let sequence = FerryQueue.sequence(fromKey: entry.key), sequence < lowest {
            try deleteRecord(&context, sequence)
            swept += 1
        }
        return swept == limit
    }

    /// The lag policy of `when_lagging: drop` consumers with bounds: moves each past its oldest pending
    /// records while it has more than `maxLagBytes` pending or its oldest pending record is older than
    /// `maxLagAgeMilliseconds`. At most `limit` records per group. Returns the records dropped.
    static func enforceLagBounds(_ context: inout WriteContext, limit: Int = 4096) throws -> Int {
        var dropped = 0
        for c in context.consumers.indices where context.consumers[c].settings.whenLagging == .drop {
            let settings = context.consumers[c].settings
            guard settings.maxLagBytes != nil || settings.maxLagAgeMilliseconds != nil else { continue }
            while dropped < limit {
                guard let oldest = try oldestPending(&context, consumer: c) else { break }
                let overBytes = settings.maxLagBytes.map { context.consumers[c].pendingBytes > UInt64($0) } ?? false
                let overAge: Bool
                if let maxAge = settings.maxLagAgeMilliseconds, let createdAt = oldest.createdAt {
                    overAge = context.now - createdAt > maxAge
                } else {
                    overAge = false
                }
                guard overBytes || overAge else { break }
                dropped += try settle(&context, consumer: c, [oldest.sequence], as: .droppedLagging)
            }
        }
        return dropped
    }

    /// `queue.max_age`: drops records made longer ago than it, oldest first, for every output that had not
    /// settled them (counted as dropped, like `drop_oldest`), at most `limit` per group. Returns the
    /// records and events dropped, and whether it stopped at `limit` with more to drop.
    static func expireOld(_ context: inout WriteContext, limit: Int = 4096) throws -> (records: Int, events: UInt64, more: Bool) {
        guard let maxAge = context.configuration.maxAgeMilliseconds else { return (0, 0, false) }
        let cutoff = context.now - maxAge
        let cursor = try context.txn.cursor(context.databases.records)
        var records = 0
        var events: UInt64 = 0
        while records < limit, let entry = try cursor.first(), let sequence = FerryQueue.sequence(fromKey: entry.key) {
            // A record whose header cannot be read is left to the outputs, which move damaged ones to `dead`.
            guard let header = try? QueueRecord.header(of: entry.value), header.createdAt < cutoff else { break }
            events += UInt64(header.eventCount)
            guard try drop(&context, sequence) != nil else { break }
            records += 1
        }
        if records > 0 {
            for c in context.consumers.indices { try advanceWatermark(&context, consumer: c) }
        }
        return (records, events, records == limit)
    }

    /// Makes room for `needed` bytes by moving lagging `when_lagging: drop` consumers past records every
    /// other consumer is done with, oldest first: a consumer that holds the queue full alone never stops the
    /// inputs or the others. Returns true once `fits()` says the append fits.
    static func dropForLaggingConsumers(_ context: inout WriteContext, fits: (QueueState) -> Bool, limit: Int = 65_536) throws -> Bool {
        // With one consumer nobody else is done with anything: `when_full` decides alone.
        guard context.consumers.count > 1 else { return fits(context.state) }
        var dropped = 0
        while !fits(context.state) && dropped < limit {
            // The consumer furthest behind among those that may be dropped for.
            guard let c = context.consumers.indices
                .filter({ context.consumers[$0].settings.whenLagging == .drop && context.consumers[$0].pendingBytes > 0 })
                .min(by: { context.consumers[$0].watermark < context.consumers[$1].watermark }),
                  let oldest = try oldestPending(&context, consumer: c),
                  context.consumers.indices.allSatisfy({ $0 == c || context.consumers[$0].isDone(oldest.sequence) })
            else { return fits(context.state) }
            dropped += try settle(&context, consumer: c, [oldest.sequence], as: .droppedLagging)
        }
        return fits(context.state)
    }

    /// The oldest record consumer `c` has not settled: its sequence and when it was made.
    static func oldestPending(_ context: inout WriteContext, consumer c: Int) throws -> (sequence: UInt64, createdAt: Int64?)? {
        let cursor = try context.txn.cursor(context.databases.records)
        var from = context.consumers[c].watermark
        while let entry = try withSequenceKey(from, { try cursor.seek($0) }), let sequence = FerryQueue.sequence(fromKey: entry.key) {
            if let range = context.consumers[c].settled.range(holding: sequence) {
                from = range.upperBound + 1
                continue
            }
            return (sequence, try? QueueRecord.header(of: entry.value).createdAt)
        }
        return nil
    }

    /// Writes the rows and settled ranges of the consumers changed in this group, in the group's
    /// transaction, and clears their marks.
    static func persistConsumers(_ consumers: inout [ConsumerState], txn: Transaction, databases: Databases) throws {
        guard let outputs = databases.outputs, let acks = databases.acks else { return }
        for c in consumers.indices where consumers[c].dirty {
            let consumer = consumers[c]
            try Array(consumer.name.utf8).withUnsafeBytes { key in
                try consumer.encoded().withUnsafeBytes { try txn.put(outputs, key, $0) }
            }
            // Its ranges: few (deliveries settle nearly in order), so rewritten whole.
            let cursor = try txn.cursor(acks)
            var entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
            while let current = entry, let key = consumerKey(current.key), key.id == consumer.id {
                try cursor.deleteCurrent()
                entry = try withConsumerKey(consumer.id, 0) { try cursor.seek($0) }
            }
            for range in consumer.settled.ranges {
                try withConsumerKey(consumer.id, range.lowerBound) { key in
                    try withUnsafeBytes(of: range.upperBound.bigEndian) { try txn.put(acks, key, $0) }
                }
            }
            consumers[c].dirty = false
        }
    }

    /// The settled ranges of consumer `id`, as stored in `acks`.
    static func settledRanges(_ txn: Transaction, databases: Databases, consumer id: UInt32) throws -> SequenceRanges {
        guard let acks = databases.acks else { return SequenceRanges() }
        var ranges: [ClosedRange<UInt64>] = []
        let cursor = try txn.cursor(acks)
        var entry = try withConsumerKey(id, 0) { try cursor.seek($0) }
        while let current = entry, let key = consumerKey(current.key), key.id == id, let last = FerryQueue.sequence(fromKey: current.value) {
            if key.sequence <= last { ranges.append(key.sequence...last) }
            entry = try cursor.next()
        }
        return SequenceRanges(ranges)
    }
}
