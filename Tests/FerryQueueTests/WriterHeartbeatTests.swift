@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Testing

/// The writer's heartbeat, which the service watchdog reads: a group in progress shows as `busySince`
/// (a slow fsync is progress), work not taken as `waitingSince`, and finished groups as a growing count.
@Suite(.timeLimit(.minutes(1)))
struct WriterHeartbeatTests {
    let generator = EventGenerator(prefix: "hb")

    @Test func anIdleWriterIsNeitherBusyNorOwedWorkAndCountsFinishedGroups() async throws {
        try await withTemporaryQueue { queue, _ in
            let before = try #require(queue.writerHeartbeat)
            _ = try await queue.append(generator.batch(0, count: 1))
            // The count is stored right after the group's completions run: wait for it, with a deadline.
            #expect(try await eventually(timeout: .seconds(10)) { (queue.writerHeartbeat?.finishedGroups ?? 0) > before.finishedGroups })
            let after = try #require(queue.writerHeartbeat)
            #expect(after.busySince == nil)
            #expect(after.waitingSince == nil)
        }
    }

    @Test func aGroupInProgressShowsAsBusyAndWorkBehindItAsWaiting() async throws {
        try await withTemporaryQueue { queue, _ in
            let release = DispatchSemaphore(value: 0)
            let entered = DispatchSemaphore(value: 0)
            let before = try #require(queue.writerHeartbeat).finishedGroups
            let start = monotonicNow()
            // A change that holds the writer inside its group, as a commit stuck in fsync would.
            let stuck = Task {
                try await queue.perform(weight: 0) { _ in
                    entered.signal()
                    release.wait()
                }
            }
            try await onThread { entered.wait() }
            let busy = try #require(queue.writerHeartbeat)
            #expect(busy.finishedGroups == before)
            #expect(try #require(busy.busySince) >= start)

            let appended = Task { try await queue.append(generator.batch(1, count: 1)) }
            #expect(try await eventually(timeout: .seconds(10)) { queue.writerHeartbeat?.waitingSince != nil })
            #expect(queue.writerHeartbeat?.busySince == busy.busySince)

            release.signal()
            try await stuck.value
            _ = try await appended.value
            #expect(try await eventually(timeout: .seconds(10)) {
                guard let beat = queue.writerHeartbeat else { return false }
                return beat.finishedGroups >= before + 2 && beat.busySince == nil && beat.waitingSince == nil
            })
        }
    }

    @Test func aReadOnlyQueueHasNoWriterAndNoHeartbeat() async throws {
        try await withTemporaryQueue { _, dir in
            let readOnly = try Queue.open(at: dir.path, mode: .readOnly, logger: RecordingLogHandler.Store().logger())
            defer { readOnly.close() }
            #expect(readOnly.writerHeartbeat == nil)
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the heartbeat's clock.
private func monotonicNow() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
