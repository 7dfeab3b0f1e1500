@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Testing

/// While a backlog drains oldest first, some leases take the newest records (the fresh lane).
@Suite struct FreshLaneTests {
    let generator = EventGenerator(prefix: "f")

    @Test func theFreshLaneTakesTheNewestAndTheOldestFirstLeasesStepOverIt() async throws {
        try await withTemporaryQueue { queue, _ in
            try await appendSingleEvents(queue, generator, count: 10)
            let all = try allRecords(queue).records.map(\.sequence)
            // Any age difference counts as a backlog here.
            let fresh = try queue.lease(maxRecords: 3, freshIfBacklogOlderThan: .zero)
            #expect(fresh.sequences == Array(all.suffix(3)))
            let head = try queue.lease(maxRecords: 4)
            #expect(head.sequences == Array(all.prefix(4)))
            // New records extend the lane; the head still stops short of it.
            try await appendSingleEvents(queue, generator, from: 10, count: 2)
            let later = try queue.lease(maxRecords: 100, freshIfBacklogOlderThan: .zero)
            #expect(later.sequences.count == 2 && later.sequences.first == all.last! + 1)
            #expect(try queue.lease(maxRecords: 100).sequences == Array(all[4..<7]))
            // Backlog drained: the head steps over the lane, and nothing is handed out twice.
            #expect(try queue.lease(maxRecords: 100).isEmpty)
            try await appendSingleEvents(queue, generator, from: 12, count: 1)
            #expect(try queue.lease(maxRecords: 100).sequences == [later.sequences.last! + 1])
        }
    }

    @Test func afterARestartTheLaneOpensOnceTheRememberedBatchesAreDelivered() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var queue = try openQueue(at: dir.path)
        try await appendSingleEvents(queue, generator, count: 10)
        let lane = try queue.lease(maxRecords: 2, freshIfBacklogOlderThan: .zero)
        #expect(try await queue.remember(lane.sequences))
        queue.close()
        queue = try openQueue(at: dir.path)
        defer { queue.close() }
        #expect(try queue.lease(maxRecords: 100).sequences == lane.sequences)
        try await queue.acknowledge(lane.sequences)
        // The batch from before the restart is delivered: the lane may open again, backlog or not drained.
        try await appendSingleEvents(queue, generator, from: 10, count: 3)
        let fresh = try queue.lease(maxRecords: 3, freshIfBacklogOlderThan: .zero)
        #expect(fresh.sequences == (try allRecords(queue).records.map(\.sequence).suffix(3)))
    }

    @Test func withoutAnOldEnoughBacklogTheFreshLeaseIsAnOrdinaryOne() async throws {
        try await withTemporaryQueue { queue, _ in
            try await appendSingleEvents(queue, generator, count: 5)
            let all = try allRecords(queue).records.map(\.sequence)
            #expect(try queue.lease(maxRecords: 2, freshIfBacklogOlderThan: .seconds(3600)).sequences == Array(all.prefix(2)))
            #expect(try queue.lease(maxRecords: 100).sequences == Array(all.suffix(3)))
        }
    }

    @Test func everyRecordIsLeasedExactlyOnceWhateverTheMixOfLeases() async throws {
        try await withTemporaryQueue { queue, _ in
            var leased: [UInt64] = []
            var rng = SystemRandomNumberGenerator()
            for round in 0..<40 {
                try await appendSingleEvents(queue, generator, from: round * 5, count: Int.random(in: 0...5, using: &rng))
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let fresh: Duration? = Bool.random(using: &rng) ? .zero : nil
                    leased += try queue.lease(maxRecords: Int.random(in: 1...4, using: &rng), freshIfBacklogOlderThan: fresh).sequences
                }
            }
            while true {
                let rest = try queue.lease(maxRecords: 100).sequences
                if rest.isEmpty { break }
                leased += rest
            }
            let stored = try allRecords(queue).records.map(\.sequence)
            #expect(leased.sorted() == stored, "\(leased.count) leased, \(stored.count) stored")
        }
    }
}
