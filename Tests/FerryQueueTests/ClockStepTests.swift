@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Synchronization
import Testing

/// A board without a real-time clock boots in 1970 and NTP then jumps decades forward; a wrong NTP server
/// steps the clock back. With the clocks injected, both steps take microseconds here (issue 20).
@Suite struct ClockStepTests {
    static let year2026: Int64 = 1_795_000_000_000
    static let hour: Int64 = 3_600_000

    /// A wall clock and a monotonic clock that the test moves, and the queue's steady clock over them.
    final class Clocks: Sendable {
        private let readings: Mutex<(wall: Int64, monotonic: Int64, steady: SteadyWallClock)>

        init(wall: Int64) {
            readings = Mutex((wall, 1_000, SteadyWallClock(wall: wall, monotonic: 1_000)))
        }

        /// Moves both clocks: `elapsed` passes, and the wall clock also steps by `step`.
        func pass(_ elapsed: Int64, wallStep step: Int64 = 0) {
            readings.withLock { $0.wall += elapsed + step; $0.monotonic += elapsed }
        }

        var wall: Int64 { readings.withLock { $0.wall } }
        var steady: Int64 { readings.withLock { $0.steady.now(monotonic: $0.monotonic) } }
    }

    func openQueue(_ dir: TemporaryDirectory, clock: @escaping @Sendable () -> Int64) throws -> Queue {
        try Queue.open(at: dir.path, configuration: QueueConfiguration(seenMaxAgeMilliseconds: Self.hour),
                       logger: RecordingLogHandler.Store().logger(), clock: clock)
    }

    func batch(_ id: Int, createdAt: Int64 = RecordTime.now()) -> EventBatch {
        var builder = RecordBuilder(createdAt: createdAt)
        builder.append(line: Array(#"{"n":\#(id)}"#.utf8))
        return builder.finish()
    }

    let batchA = "0123456789abcdef/1-1"
    let batchB = "0123456789abcdef/2-2"

    @Test func aJumpOfDecadesForwardDoesNotPruneSeenWholesale() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let clocks = Clocks(wall: 0)  // booted in 1970
        let queue = try openQueue(dir) { clocks.steady }
        defer { queue.close() }
        _ = try await queue.append(batch(1), batchID: batchA)
        clocks.pass(2_000, wallStep: Self.year2026)  // NTP: 56 years forward
        _ = try await queue.append(batch(2), batchID: batchB)  // its commit prunes `seen`
        // The sender's retry of A, two seconds later, is still recognised.
        #expect(try await queue.append(batch(1), batchID: batchA).duplicate)
        // And `seen` still ages by the time that passed: an hour later both ids are gone.
        clocks.pass(Self.hour + 2_000)
        _ = try await queue.append(batch(3))
        clocks.pass(2_000)
        _ = try await queue.append(batch(4))
        #expect(try await !queue.append(batch(1), batchID: batchA).duplicate)
    }

    @Test func onTheRawWallClockTheSameJumpPrunesEverything() async throws {
        // What the steady clock prevents: the queue's clock read straight from the stepping wall clock.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let clocks = Clocks(wall: 0)
        let queue = try openQueue(dir) { clocks.wall }
        defer { queue.close() }
        _ = try await queue.append(batch(1), batchID: batchA)
        clocks.pass(2_000, wallStep: Self.year2026)
        _ = try await queue.append(batch(2), batchID: batchB)
        #expect(try await !queue.append(batch(1), batchID: batchA).duplicate)
    }

    @Test func aStepBackDoesNotKeepSeenEntriesBeyondTheirAge() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let clocks = Clocks(wall: Self.year2026)
        let queue = try openQueue(dir) { clocks.steady }
        defer { queue.close() }
        _ = try await queue.append(batch(1), batchID: batchA)
        clocks.pass(2_000, wallStep: -24 * Self.hour)  // a wrong NTP server: a day back
        _ = try await queue.append(batch(2), batchID: batchB)
        #expect(try await queue.append(batch(1), batchID: batchA).duplicate)
        clocks.pass(Self.hour - 1_000)
        _ = try await queue.append(batch(3))
        // An hour has passed since A: it is gone; B, stored 2 s after it (and after the step), is still there.
        #expect(try await !queue.append(batch(5), batchID: batchA).duplicate)
        #expect(try await queue.append(batch(2), batchID: batchB).duplicate)
    }

    @Test func theFreshLaneDoesNotTakeAJumpForABacklog() async throws {
        for steady in [true, false] {
            let dir = try TemporaryDirectory()
            defer { dir.remove() }
            let clocks = Clocks(wall: 0)
            let queue = try openQueue(dir) { clocks.steady }
            defer { queue.close() }
            // Records made half a second apart, across a jump of 56 years; their times as the ingest gives them.
            for n in 0..<6 {
                if n == 3 { clocks.pass(500, wallStep: Self.year2026) } else { clocks.pass(500) }
                _ = try await queue.append(batch(n, createdAt: steady ? clocks.steady : clocks.wall))
            }
            let oldest = try #require(try allRecords(queue).records.first?.sequence)
            let lease = try queue.lease(maxRecords: 2, freshIfBacklogOlderThan: .seconds(5))
            let first = try #require(lease.sequences.first)
            if steady {
                #expect(first == oldest, "a lease from the oldest end: there is no backlog older than 5 s")
            } else {
                #expect(first > oldest, "on the raw wall clock the jump looks like a 56-year backlog")
            }
        }
    }

    @Test func recordAgesStayTrueThroughStepsBothWays() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let clocks = Clocks(wall: Self.year2026)
        let queue = try openQueue(dir) { clocks.steady }
        defer { queue.close() }
        _ = try await queue.append(batch(1, createdAt: clocks.steady))
        for step in [-24 * Self.hour, 56 * 365 * 24 * Self.hour] {
            clocks.pass(10_000, wallStep: step)
            let json = queue.stats.json(agentID: queue.agentID, path: queue.path, now: clocks.steady)
            let age = json.split(separator: ",").first { $0.hasPrefix(#""oldest_age_seconds":"#) }?.split(separator: ":").last
            #expect(age.flatMap { Double($0) }.map { $0 > 0 && $0 <= 20 } == true, "after a step of \(step) ms: \(age ?? "none")")
        }
    }

    @Test func theSteadyClockCarriesOnThroughStepsAndIsRaisedToStoredTimes() {
        var clock = SteadyWallClock(wall: 0, monotonic: 50)
        #expect(clock.now(monotonic: 1_050) == 1_000)
        clock.raise(toAtLeast: 5_000, monotonic: 1_050)
        #expect(clock.now(monotonic: 1_050) == 5_000)
        #expect(clock.now(monotonic: 2_050) == 6_000)
        clock.raise(toAtLeast: 10, monotonic: 2_050)  // never backwards
        #expect(clock.now(monotonic: 2_050) == 6_000)
        // A stored time at most a day ahead of the wall clock raises it; one years ahead does not carry on.
        #expect(Queue.raisedTime(newestStored: 1_000 + Self.hour, wall: 1_000) == 1_000 + Self.hour)
        #expect(Queue.raisedTime(newestStored: Self.year2026, wall: 0) == 24 * Self.hour)
    }
}
