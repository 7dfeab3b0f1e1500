@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Synchronization
import Testing

/// A close that races readers: the admin endpoint asks for stats while the agent stops (issue 20). A
/// read either finishes before the close or fails with `closed`; none touches a closed environment.
@Suite struct QueueCloseTests {
    @Test(.timeLimit(.minutes(1)))
    func statsAndReadsRacingACloseNeverTouchAClosedEnvironment() async throws {
        let generator = EventGenerator(prefix: "close")
        for round in 0..<20 {
            try await withTemporaryQueue { queue, _ in
                try await appendSingleEvents(queue, generator, count: 5)
                let unexpected = Problems()
                let readers = (0..<4).map { _ in
                    Thread.detachedLoop {
                        _ = queue.stats
                        do {
                            _ = try queue.peek(from: 0, maxRecords: 10)
                        } catch let error as QueueError where error.code != .closed {
                            unexpected.list.withLock { $0.append("\(error)") }
                        } catch {}
                    }
                }
                queue.close()
                for reader in readers { reader.stop() }
                #expect(unexpected.list.withLock { $0 }.isEmpty, "round \(round)")
                #expect(queue.stats.appendedEvents == 5)
                #expect(throws: QueueError.self) { try queue.peek(from: 0, maxRecords: 10) }
            }
        }
    }
}

/// A thread that runs `body` in a loop until stopped: readers on threads of their own, as the admin
/// server's event loops are, so that they truly race the close.
final class LoopingThread: @unchecked Sendable {
    private let stopped = NSCondition()
    private var stopRequested = false
    private var finished = false

    func stop() {
        stopped.lock()
        stopRequested = true
        while !finished { stopped.wait() }
        stopped.unlock()
    }

    fileprivate func run(_ body: @escaping @Sendable () -> Void) {
        Thread {
            while true {
                self.stopped.lock()
                let stop = self.stopRequested
                self.stopped.unlock()
                if stop { break }
                body()
            }
            self.stopped.lock()
            self.finished = true
            self.stopped.broadcast()
            self.stopped.unlock()
        }.start()
    }
}

extension Thread {
    static func detachedLoop(_ body: @escaping @Sendable () -> Void) -> LoopingThread {
        let thread = LoopingThread()
        thread.run(body)
        return thread
    }
}

/// Errors seen on other threads, checked by the test afterwards.
final class Problems: Sendable {
    let list = Mutex<[String]>([])
}
