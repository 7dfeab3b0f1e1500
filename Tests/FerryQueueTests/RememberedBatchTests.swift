@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Testing

/// A remembered lease comes back after a restart as exactly the records it had, so its retry carries the
/// same `Ferry-Batch` id; new records are never folded into it.
@Suite struct RememberedBatchTests {
    let generator = EventGenerator(prefix: "r")

    @Test func rememberedBatchesComeBackWholeAndAloneAfterReopen() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var queue = try openQueue(at: dir.path)
        try await appendSingleEvents(queue, generator, count: 10)
        let a = try queue.lease(maxRecords: 3)
        let b = try queue.lease(maxRecords: 2)
        let c = try queue.lease(maxRecords: 3)
        #expect(try await queue.remember(a.sequences))
        #expect(try await queue.remember(c.sequences))
        #expect(try await !queue.remember(a.sequences), "an overlapping batch is not remembered twice")
        // The process stops with all three in flight; more events arrive before the restart.
        queue.close()
        queue = try openQueue(at: dir.path)
        try await appendSingleEvents(queue, generator, from: 10, count: 5)

        #expect(try queue.lease(maxRecords: 100).sequences == a.sequences)
        #expect(try queue.lease(maxRecords: 100).sequences == c.sequences)
        // b was not remembered: it is leased again, but stops short of c's records.
        #expect(try queue.lease(maxRecords: 100).sequences == b.sequences)
        let rest = try queue.lease(maxRecords: 100)
        #expect(rest.sequences.count == 7 && rest.sequences.first == c.sequences.last! + 1)
        #expect(try queue.lease(maxRecords: 100).isEmpty)

        // Acknowledged, a batch is forgotten: after the next reopen only c comes back as a batch.
        try await queue.acknowledge(a.sequences)
        queue.close()
        queue = try openQueue(at: dir.path)
        defer { queue.close() }
        #expect(try queue.lease(maxRecords: 100).sequences == c.sequences)
        #expect(try queue.lease(maxRecords: 1).sequences == [b.sequences[0]])
    }

    @Test func aReleasedRememberedBatchIsLeasedAgainWholeWhateverTheLimits() async throws {
        try await withTemporaryQueue { queue, _ in
            try await appendSingleEvents(queue, generator, count: 6)
            let batch = try queue.lease(maxRecords: 4)
            #expect(try await queue.remember(batch.sequences))
            queue.release(batch.sequences)
            #expect(try queue.lease(maxRecords: 1).sequences == batch.sequences)
            // Released again in part (as an output that delivered some of it would), it still goes whole.
            queue.release(batch.sequences.suffix(1))
            #expect(try queue.lease(maxRecords: 1).sequences == batch.sequences)
            #expect(try queue.lease(maxRecords: 100).sequences.count == 2)
        }
    }

    @Test func aLeaseWithGapsIsNotRemembered() async throws {
        try await withTemporaryQueue { queue, _ in
            try await appendSingleEvents(queue, generator, count: 10)
            let a = try queue.lease(maxRecords: 2)
            let inFlight = try queue.lease(maxRecords: 3)
            queue.release(a)
            // Released records first, then newer ones: the bounds of this lease span `inFlight`.
            let mixed = try queue.lease(maxRecords: 100)
            #expect(mixed.sequences.count == 7)
            #expect(try await !queue.remember(mixed.sequences))
            #expect(try await queue.remember(inFlight.sequences))
            // Had it been remembered, releasing it would hand out inFlight's records a second time.
            queue.release(mixed.sequences)
            let again = try queue.lease(maxRecords: 100)
            #expect(Set(again.sequences).isDisjoint(with: inFlight.sequences))
        }
    }

    @Test func aBatchIsForgottenOnlyWhenNoneOfItsRecordsIsLeft() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var queue = try openQueue(at: dir.path)
        try await appendSingleEvents(queue, generator, count: 6)
        let batch = try queue.lease(maxRecords: 4)
        #expect(try await queue.remember(batch.sequences))
        // Part delivered, part dead, one record left: after a restart that record goes alone.
        try await queue.acknowledge(Array(batch.sequences.prefix(2)))
        try await queue.moveToDead([batch.sequences[2]], reason: "test")
        queue.close()
        queue = try openQueue(at: dir.path)
        #expect(try queue.lease(maxRecords: 100).sequences == [batch.sequences[3]])
        // Dead too now: nothing of it is left, so it is forgotten and the next lease takes new records freely.
        try await queue.moveToDead([batch.sequences[3]], reason: "test")
        queue.close()
        queue = try openQueue(at: dir.path)
        defer { queue.close() }
        #expect(try queue.lease(maxRecords: 100).sequences.count == 2)
        let remembered = try queue.read { txn in try txn.entries(queue.databases.batches!) }
        #expect(remembered == 0)
    }
}
