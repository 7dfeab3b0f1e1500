@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import Testing

/// Named outputs over one stored copy: each consumer's cursor, dead set and lag policy.
@Suite struct ConsumerTests {
    let generator = EventGenerator(prefix: "n")

    func configuration(_ consumers: [ConsumerSettings], maxBytes: Int = 1 << 30) -> QueueConfiguration {
        var configuration = QueueConfiguration(maxBytes: maxBytes)
        configuration.consumers = consumers
        return configuration
    }

    /// Three consumers lease, acknowledge, bury and release at random against a model: each consumer gets
    /// exactly its pending records, a record stays while any consumer needs it and moves to `dead` only
    /// when every consumer is done and one buried it; the counts survive a reopen.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func threeConsumersFollowTheModel(seed: UInt64) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let names = ["a", "b", "c"]
        let settings = configuration(names.map { ConsumerSettings(name: $0, whenLagging: .block) })
        var queue = try openQueue(at: dir.path, configuration: settings)
        var rng = SeededGenerator(seed: seed)
        var events: [UInt64: UInt64] = [:]        // sequence → events
        var pending: [String: Set<UInt64>] = [:]  // not settled by the consumer
        var leased: [String: Set<UInt64>] = [:]
        var buried = Set<UInt64>()                // buried by at least one consumer

        func check(_ step: Int) throws {
            let stats = queue.stats
            let waiting = names.reduce(into: Set<UInt64>()) { $0.formUnion(pending[$1, default: []]) }
            #expect(stats.records == waiting.count, "step \(step): records")
            let dead = events.keys.filter { !waiting.contains($0) && buried.contains($0) }
            #expect(stats.deadRecords == dead.count, "step \(step): dead records")
            for name in names {
                let output = try #require(stats.outputs.first { $0.name == name })
                #expect(output.pendingEvents == pending[name, default: []].reduce(0) { $0 + events[$1]! }, "step \(step): \(name) pending")
            }
        }

        for step in 0..<400 {
            let name = names[Int.random(in: 0..<names.count, using: &rng)]
            let consumer = try queue.consumer(named: name)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<3:
                let count = Int.random(in: 1...5, using: &rng)
                let receipt = try await queue.append(generator.batch(step, count: count))
                let sequence = try #require(receipt.firstSequence)
                #expect(receipt.lastSequence == sequence)
                events[sequence] = UInt64(count)
                for n in names { pending[n, default: []].insert(sequence) }
            case 3..<6:
                let lease = try consumer.lease(maxRecords: Int.random(in: 1...8, using: &rng))
                let free = pending[name, default: []].subtracting(leased[name, default: []])
                #expect(Set(lease.sequences).isSubset(of: free), "step \(step): \(name) was handed \(lease.sequences), free \(free.sorted())")
                #expect(lease.isEmpty == free.isEmpty, "step \(step): \(name) got \(lease.sequences) with \(free.count) free")
                leased[name, default: []].formUnion(lease.sequences)
            case 6..<9:
                let chosen = leased[name, default: []].filter { _ in Bool.random(using: &rng) }.sorted()
                guard !chosen.isEmpty else { continue }
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    #expect(try await consumer.moveToDead(chosen, reason: "refused") == chosen.count)
                    buried.formUnion(chosen)
                } else {
                    #expect(try await consumer.acknowledge(chosen) == chosen.count)
                }
                // Settling again is a no-op: nothing is counted twice.
                #expect(try await consumer.acknowledge(chosen) == 0)
                pending[name]!.subtract(chosen)
                leased[name]!.subtract(chosen)
            default:
                consumer.release(leased[name, default: []])
                leased[name] = []
            }
            try check(step)
        }

        // Reopened, the cursors are where they were and leases start over from what each has pending.
        queue.close()
        queue = try openQueue(at: dir.path, configuration: settings)
        defer { queue.close() }
        try check(400)
        for name in names {
            let lease = try queue.consumer(named: name).lease(maxRecords: 100_000)
            #expect(Set(lease.sequences) == pending[name, default: []], "\(name) after reopen")
        }
    }

    /// The archive is dead, the aggregator delivers: when the queue is full, the archive (`when_lagging:
    /// drop`) is moved past records the aggregator is done with, counted per output; appends go on.
    @Test func aLaggingDropOutputIsMovedPastAndTheOthersGoOn() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let logs = RecordingLogHandler.Store()
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "aggregator"), ConsumerSettings(name: "archive")], maxBytes: 64 << 10), logs: logs)
        defer { queue.close() }
        let aggregator = try queue.consumer(named: "aggregator")
        var delivered = 0
        var appended = 0
        // Until the queue has been full for a while: how many batches that takes depends on how well they
        // compress. Bounded: 2,000 batches of 20 events are far more than 64 KiB.
        var batchesAfterTheFirstDrop = 0
        for batch in 0..<2_000 where batchesAfterTheFirstDrop < 50 {
            _ = try await queue.append(generator.batch(batch, count: 20))
            appended += 20
            let lease = try aggregator.lease(maxRecords: 1000)
            delivered += lease.eventCount
            try await aggregator.acknowledge(lease)
            if queue.stats.outputs.first(where: { $0.name == "archive" })?.droppedLaggingEvents ?? 0 > 0 { batchesAfterTheFirstDrop += 1 }
        }
        #expect(delivered == appended)
        let stats = queue.stats
        let archive = try #require(stats.outputs.first { $0.name == "archive" })
        #expect(archive.droppedLaggingEvents > 0)
        #expect(archive.pendingEvents + archive.droppedLaggingEvents == appended)
        #expect(stats.outputs.first { $0.name == "aggregator" }?.pendingEvents == 0)
        #expect(stats.bytes <= 64 << 10)
    }

    /// Both outputs dead: nobody is done with anything, so `when_full: block` refuses (the ingest answers
    /// 429) and nothing is dropped.
    @Test func allOutputsLaggingBlocksInsteadOfDropping() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "a"), ConsumerSettings(name: "b")], maxBytes: 64 << 10))
        defer { queue.close() }
        var refused: QueueError.Code?
        for batch in 0..<400 where refused == nil {
            refused = await queueErrorCode { _ = try await queue.append(generator.batch(batch, count: 20)) }
        }
        #expect(refused == .full)
        #expect(queue.stats.outputs.allSatisfy { $0.droppedLaggingEvents == 0 })
    }

    /// `when_lagging: block` with `max_lag_bytes`: past its bound the output refuses appends until it
    /// catches up, even with room in the queue.
    @Test func aBlockingOutputPastItsBoundRefusesAppendsUntilItCatchesUp() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "all", whenLagging: .block, maxLagBytes: 8 << 10)]))
        defer { queue.close() }
        var refused: QueueError.Code?
        var batch = 0
        while refused == nil && batch < 1000 {
            refused = await queueErrorCode { _ = try await queue.append(generator.batch(batch, count: 20)) }
            batch += 1
        }
        #expect(refused == .full)
        let consumer = try queue.consumer(named: "all")
        try await consumer.acknowledge(consumer.lease(maxRecords: 100_000))
        #expect(await queueErrorCode { _ = try await queue.append(generator.batch(batch, count: 20)) } == nil)
    }

    /// `max_lag_bytes` on a drop output: it is moved past its oldest records as soon as it is past its
    /// bound, full queue or not.
    @Test func aDropOutputPastItsBoundIsMovedPastItsOldest() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "main"), ConsumerSettings(name: "side", maxLagBytes: 4 << 10)]))
        defer { queue.close() }
        for batch in 0..<100 { _ = try await queue.append(generator.batch(batch, count: 10)) }
        let side = try #require(queue.stats.outputs.first { $0.name == "side" })
        #expect(side.pendingBytes <= 4 << 10 + 1024)
        #expect(side.droppedLaggingEvents > 0)
        #expect(queue.stats.outputs.first { $0.name == "main" }?.pendingEvents == 1000)
    }

    /// An output restarted after a failure gets again what its dead instance had leased and not settled;
    /// the other outputs' leases are untouched.
    @Test func restartedLeasesHandOutWhatTheFailedInstanceHeld() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "a"), ConsumerSettings(name: "b")]))
        defer { queue.close() }
        try await appendSingleEvents(queue, generator, count: 6)
        let a = try queue.consumer(named: "a"), b = try queue.consumer(named: "b")
        let held = try a.lease(maxRecords: 4)
        try await a.acknowledge([held.sequences[0]])
        let heldByB = try b.lease(maxRecords: 6)
        #expect(try a.lease(maxRecords: 10).sequences.count == 2)  // the rest; now a holds all
        #expect(try a.lease(maxRecords: 10).isEmpty)
        a.restartLeases()
        #expect(try a.lease(maxRecords: 10).sequences == Array(held.sequences.dropFirst()) + [held.sequences.last! + 1, held.sequences.last! + 2])
        #expect(try b.lease(maxRecords: 10).isEmpty, "b's own leases stay outstanding")
        #expect(heldByB.sequences.count == 6)
    }

    /// Requeueing for one output delivers to that output only; the others never see the copy.
    @Test func requeueForOneOutputRedeliversToItOnly() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "a"), ConsumerSettings(name: "b")]))
        defer { queue.close() }
        try await appendSingleEvents(queue, generator, count: 4)
        let a = try queue.consumer(named: "a"), b = try queue.consumer(named: "b")
        let leaseA = try a.lease(maxRecords: 10), leaseB = try b.lease(maxRecords: 10)
        try await a.moveToDead([leaseA.sequences[0]], reason: "refused by a")
        try await a.acknowledge(Array(leaseA.sequences.dropFirst()))
        try await b.acknowledge(leaseB)
        #expect(queue.stats.records == 0)
        #expect(try queue.deadRecords(output: "a").map(\.sequence) == [leaseA.sequences[0]])
        #expect(try queue.deadRecords(output: "b").isEmpty)
        #expect(try await queue.requeueDead(output: "a") == 1)
        #expect(try b.lease(maxRecords: 10).isEmpty)
        let again = try a.lease(maxRecords: 10)
        #expect(try eventIDs(again.records) == ["n-b0-e0"])
        try await a.acknowledge(again)
        #expect(queue.stats.records == 0 && queue.stats.deadRecords == 0)
    }

    /// An output removed from the configuration is deleted at the next open, with a warning that names it
    /// and what it had not delivered; the records it alone held are freed.
    @Test func aRemovedOutputIsDeletedAtOpenWithAWarning() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        do {
            let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "keep"), ConsumerSettings(name: "gone")]))
            try await appendSingleEvents(queue, generator, count: 5)
            let keep = try queue.consumer(named: "keep")
            try await keep.acknowledge(keep.lease(maxRecords: 10))
            #expect(queue.stats.records == 5)
            queue.close()
        }
        let logs = RecordingLogHandler.Store()
        let queue = try openQueue(at: dir.path, configuration: configuration([ConsumerSettings(name: "keep")]), logs: logs)
        defer { queue.close() }
        #expect(queue.consumerNames == ["keep"])
        let warning = try #require(logs.all.first { $0.level == .warning && $0.metadata["ferry.output"] == "gone" })
        #expect(warning.metadata["ferry.output.undelivered_events"] == "5")
        #expect(try await eventually { (try? queue.readStats().records) == 0 })
    }

    /// A queue written by Ferry 0.1 (format 1: one output, dead records and remembered batches keyed by
    /// sequence alone) opens as the output `default`, with its backlog, dead set and remembered batch.
    @Test func aFormat1QueueOpensAsTheDefaultOutput() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        do {
            let queue = try openQueue(at: dir.path)
            try await appendSingleEvents(queue, generator, count: 6)
            let lease = try queue.lease(maxRecords: 3)
            try await queue.moveToDead([lease.sequences[0]], reason: "refused in 0.1")
            #expect(try await queue.remember(Array(lease.sequences.dropFirst())))
            queue.close()
        }
        try downgradeToFormat1(dir.path)

        // Read-only (ferry-tools while nothing upgraded it): the implied default output.
        let readOnly = try Queue.open(at: dir.path, mode: .readOnly, logger: RecordingLogHandler.Store().logger())
        #expect(readOnly.stats.outputs.map(\.name) == ["default"])
        #expect(readOnly.stats.outputs.first?.pendingEvents == 5)
        #expect(try readOnly.deadRecords(output: "default").count == 1)
        readOnly.close()

        let queue = try openQueue(at: dir.path)
        defer { queue.close() }
        #expect(queue.consumerNames == ["default"])
        let stats = queue.stats
        #expect(stats.records == 5 && stats.deadRecords == 1)
        #expect(stats.outputs.first?.pendingEvents == 5 && stats.outputs.first?.deadRecords == 1)
        #expect(try queue.deadRecords(output: "default").first?.reason == "refused in 0.1")
        // The remembered batch goes first, whole and by itself.
        let first = try queue.lease(maxRecords: 100)
        #expect(try eventIDs(first.records) == ["n-b1-e0", "n-b2-e0"])
        try await queue.acknowledge(first)
        #expect(try eventIDs(queue.lease(maxRecords: 100).records) == ["n-b3-e0", "n-b4-e0", "n-b5-e0"])
    }

    /// Rewrites a queue of one output into format 1's layout, as Ferry 0.1 left it: format 1, no consumer
    /// tables, remembered batches keyed by first sequence.
    func downgradeToFormat1(_ path: String) throws {
        let env = try Environment(path: path, mapSize: 1 << 26, maxDatabases: 16, flags: [])
        defer { env.close() }
        let txn = try env.beginTransaction(readOnly: false)
        let meta = try #require(try txn.openDatabase("meta", create: false))
        try Array("format".utf8).withUnsafeBytes { key in
            try withUnsafeBytes(of: UInt32(1).bigEndian) { try txn.put(meta, key, $0) }
        }
        for key in ["written-by", "next-output-id"] { _ = try Array(key.utf8).withUnsafeBytes { try txn.delete(meta, $0) } }
        for name in ["outputs", "acks", "dead_marks"] {
            try txn.drop(try #require(try txn.openDatabase(name, create: false)))
        }
        let batches = try #require(try txn.openDatabase("batches", create: false))
        let cursor = try txn.cursor(batches)
        var rows: [([UInt8], [UInt8])] = []
        var entry = try cursor.first()
        while let current = entry {
            rows.append((Array(current.key), Array(current.value)))
            entry = try cursor.next()
        }
        for (key, value) in rows {
            _ = try key.withUnsafeBytes { try txn.delete(batches, $0) }
            try Array(key.suffix(8)).withUnsafeBytes { k in try value.withUnsafeBytes { try txn.put(batches, k, $0) } }
        }
        try txn.commit()
    }
}
