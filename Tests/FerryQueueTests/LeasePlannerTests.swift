@testable import FerryQueue
import FerryTestSupport
import Testing

/// Stored records in memory, as the planner sees them: sequence, stored size, events, created-at.
struct ArraySource: LeaseSource {
    struct Record: Hashable {
        var sequence: UInt64
        var size = 100
        var events = 1
        var createdAt: Int64 = 0
    }
    typealias Entry = Record

    var records: [Record] = []
    private var position = 0

    init(_ records: [Record] = []) { self.records = records }

    private func lowerBound(_ sequence: UInt64) -> Int {
        var low = 0, high = records.count
        while low < high {
            let mid = (low + high) / 2
            if records[mid].sequence < sequence { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func seek(_ sequence: UInt64) -> Record? {
        position = lowerBound(sequence)
        return position < records.count ? records[position] : nil
    }
    mutating func next() -> Record? {
        position += 1
        return position < records.count ? records[position] : nil
    }
    mutating func previous() -> Record? {
        position -= 1
        return position >= 0 && position < records.count ? records[position] : nil
    }
    mutating func last() -> Record? {
        position = records.count - 1
        return records.last
    }
    mutating func entry(at sequence: UInt64) -> Record? {
        let i = lowerBound(sequence)
        return i < records.count && records[i].sequence == sequence ? records[i] : nil
    }
    func sequence(of entry: Record) -> UInt64 { entry.sequence }
    func size(of entry: Record) -> Int { entry.size }
    func events(of entry: Record) -> Int { entry.events }
    func createdAt(of entry: Record) -> Int64? { entry.createdAt }

    mutating func delete(_ sequences: Set<UInt64>) { records.removeAll { sequences.contains($0.sequence) } }
}

/// A planner and its records, by reference, so that `#expect` can call `lease` (it cannot call a mutating method).
final class Planning {
    var planner: LeasePlanner
    var store: ArraySource

    init(_ store: ArraySource, remembered: [ClosedRange<UInt64>] = []) {
        self.store = store
        planner = LeasePlanner(remembered: remembered)
    }

    func lease(records: Int = 1000, bytes: Int = .max, events: Int = .max, fresh: Duration? = nil) -> [UInt64] {
        let limits = LeasePlanner.Limits(maxRecords: records, maxBytes: bytes, maxEvents: events, freshIfBacklogOlderThan: fresh)
        return try! planner.plan(&store, limits).map(\.sequence)
    }
}

/// The lease policies without LMDB: exact answers, and a model run of random operations.
@Suite struct LeasePlannerTests {
    func source(_ count: Int, createdAt: (UInt64) -> Int64 = { _ in 0 }) -> ArraySource {
        ArraySource((0..<UInt64(count)).map { .init(sequence: $0, createdAt: createdAt($0)) })
    }

    @Test func leasesOldestFirstWithinTheLimits() {
        let p = Planning(source(10))
        p.store.records[3].size = 500
        #expect(p.lease(records: 3) == [0, 1, 2])
        // 3 alone is larger than the byte limit: it goes by itself, as the first record of a lease.
        #expect(p.lease(bytes: 250) == [3])
        #expect(p.lease(bytes: 250) == [4, 5])
        p.store.records[6].events = 5
        #expect(p.lease(events: 4) == [6])
        #expect(p.lease() == [7, 8, 9])
        #expect(p.lease().isEmpty)
    }

    @Test func releasedRecordsGoBeforeNewerOnesAndDeletedOnesAreSkipped() {
        let p = Planning(source(6))
        #expect(p.lease(records: 4) == [0, 1, 2, 3])
        p.planner.release([3, 1, 2])
        p.store.delete([2])
        #expect(p.lease(records: 3) == [1, 3, 4])
        #expect(p.lease() == [5])
    }

    @Test func aRememberedBatchGoesWholeAndAloneWhateverTheLimits() {
        let p = Planning(source(10))
        #expect(p.lease(records: 4) == [0, 1, 2, 3])
        let added = p.planner.add(0...3)
        let overlapping = p.planner.add(2...5)
        #expect(added)
        #expect(!overlapping, "overlapping batches are refused")
        p.planner.release([1])
        p.store.delete([2])
        #expect(p.lease(records: 1) == [0, 1, 3])
        // After a reopen the last run's batch goes first, and the oldest-first leases step over it.
        let reopened = Planning(p.store, remembered: [0...3])
        #expect(reopened.lease(records: 2) == [0, 1, 3])
        #expect(reopened.lease(records: 2) == [4, 5])
        let again = Planning(p.store, remembered: [4...5])
        #expect(again.lease(records: 3) == [4, 5])
        #expect(again.lease(records: 3) == [0, 1, 3])
        #expect(again.lease(records: 3) == [6, 7, 8])
    }

    @Test func aBatchWhoseRecordsAreAllGoneIsForgotten() {
        let p = Planning(source(4), remembered: [1...2])
        p.store.delete([1, 2])
        #expect(p.lease() == [0, 3])
        #expect(p.planner.remembered.isEmpty)
    }

    @Test func theFreshLaneTakesTheNewestAndTheHeadStepsOverIt() {
        // Records 0..9 made a second apart: a backlog of 9 s.
        let p = Planning(source(10) { Int64($0) * 1000 })
        #expect(p.lease(records: 3, fresh: .seconds(5)) == [7, 8, 9])
        #expect(p.lease(records: 4) == [0, 1, 2, 3])
        p.store.records.append(.init(sequence: 10, createdAt: 10_000))
        // The lane goes on with what arrives after it.
        #expect(p.lease(records: 3, fresh: .seconds(5)) == [10])
        #expect(p.lease(records: 10) == [4, 5, 6])
        #expect(p.lease(records: 10).isEmpty)
        // Nothing older than the lane's age: no lane, oldest first.
        let young = Planning(source(5) { Int64($0) * 100 })
        #expect(young.lease(records: 2, fresh: .seconds(5)) == [0, 1])
    }

    @Test func theFreshLaneNeverWalksIntoARememberedBatch() {
        let p = Planning(source(10) { Int64($0) * 1000 }, remembered: [8...9])
        #expect(p.lease() == [8, 9])  // the last run's batch goes first, by itself
        // The walk down from the newest meets the batch at once: no lane opens, the lease is oldest first.
        #expect(p.lease(records: 3, fresh: .seconds(5)) == [0, 1, 2])
        #expect(p.planner.fresh == nil)
    }

    /// Random mixes of lease (with and without the fresh lane), release, acknowledge, remember and reopen
    /// over a store that grows: no record is ever in two outstanding leases, a remembered batch comes back
    /// whole and alone, and in the end every record is leased and acknowledged.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func everyRecordIsLeasedExactlyOnceUnderRandomOperations(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let p = Planning(ArraySource())
        var nextSequence: UInt64 = 0
        var outstanding: [[UInt64]] = []         // leases handed out, not settled yet
        var rememberedDurably: [ClosedRange<UInt64>] = []  // what the `batches` table would hold
        var delivered: Set<UInt64> = []
        var now: Int64 = 0

        func append(_ count: Int) {
            for _ in 0..<count {
                now += Int64.random(in: 0...3000, using: &rng)
                p.store.records.append(.init(sequence: nextSequence, size: Int.random(in: 50...150, using: &rng),
                                           events: Int.random(in: 1...3, using: &rng), createdAt: now))
                nextSequence += 1
            }
        }
        func settle(_ sequences: [UInt64]) {
            // What the queue's writer does: delete, and forget batches none of whose records is left.
            p.store.delete(Set(sequences))
            for batch in p.planner.batches(holding: sequences) where !p.store.records.contains(where: { batch.contains($0.sequence) }) {
                p.planner.forget(batch)
                rememberedDurably.removeAll { $0 == batch }
            }
        }
        func takeLease(fresh: Duration?) {
            let held = Set(outstanding.joined())
            let lease = p.lease(records: Int.random(in: 1...6, using: &rng), bytes: Int.random(in: 100...600, using: &rng),
                                events: Int.random(in: 2...12, using: &rng), fresh: fresh)
            guard !lease.isEmpty else { return }
            #expect(Set(lease).count == lease.count, "a record twice in one lease")
            #expect(held.isDisjoint(with: lease), "seed \(seed): \(lease) overlaps an outstanding lease")
            #expect(lease.allSatisfy { sequence in p.store.records.contains { $0.sequence == sequence } })
            // A remembered batch comes back whole (what is left of it) and alone.
            if let batch = p.planner.batch(holding: lease[0]) {
                let left = p.store.records.map(\.sequence).filter { batch.contains($0) }
                if lease.allSatisfy({ batch.contains($0) }) {
                    #expect(lease == left, "seed \(seed): batch \(batch) came back as \(lease), not \(left)")
                }
            }
            outstanding.append(lease)
        }

        append(20)
        for _ in 0..<600 {
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<15: append(Int.random(in: 1...8, using: &rng))
            case 15..<40: takeLease(fresh: nil)
            case 40..<50: takeLease(fresh: .seconds(5))
            case 50..<65 where !outstanding.isEmpty:
                let lease = outstanding.remove(at: Int.random(in: 0..<outstanding.count, using: &rng))
                delivered.formUnion(lease)
                settle(lease)
            case 65..<72 where !outstanding.isEmpty:
                // A partial acknowledgement (the kafka output settles record by record), then the rest released.
                let lease = outstanding.remove(at: Int.random(in: 0..<outstanding.count, using: &rng))
                let cut = Int.random(in: 0...lease.count, using: &rng)
                delivered.formUnion(lease[..<cut])
                settle(Array(lease[..<cut]))
                p.planner.release(lease[cut...])
            case 72..<82 where !outstanding.isEmpty:
                p.planner.release(outstanding.remove(at: Int.random(in: 0..<outstanding.count, using: &rng)))
            case 82..<94 where !outstanding.isEmpty:
                // Remember a gapless lease, as `Queue.remember` does before the first send.
                let lease = outstanding[Int.random(in: 0..<outstanding.count, using: &rng)]
                let stored = p.store.records.map(\.sequence).filter { (lease.first!...lease.last!).contains($0) }
                if stored == lease, p.planner.add(lease.first!...lease.last!) {
                    rememberedDurably.append(lease.first!...lease.last!)
                }
            case 94..<100:
                // Reopen: leases are gone, the remembered batches that still hold records wait to go first.
                outstanding = []
                rememberedDurably = rememberedDurably.filter { batch in p.store.records.contains { batch.contains($0.sequence) } }.sorted { $0.lowerBound < $1.lowerBound }
                p.planner = LeasePlanner(remembered: rememberedDurably)
            default: break
            }
        }
        // Drain: everything still stored is leased (once) and acknowledged.
        for lease in outstanding { delivered.formUnion(lease); settle(lease) }
        outstanding = []
        var rounds = 0
        while !p.store.records.isEmpty && rounds < 10_000 {
            let held = Set(outstanding.joined())
            let lease = p.lease(records: 5)
            #expect(held.isDisjoint(with: lease))
            if lease.isEmpty { break }
            delivered.formUnion(lease)
            settle(lease)
            rounds += 1
        }
        #expect(p.store.records.isEmpty, "seed \(seed): \(p.store.records.count) records were never leased again")
        #expect(delivered == Set(0..<nextSequence))
    }
}
