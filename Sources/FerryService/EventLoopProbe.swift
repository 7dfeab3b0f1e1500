import Synchronization

/// The watchdog's probe of the event loops: `send()` schedules a tiny task on every loop, which stamps
/// the time when it runs; `answeredAt` is the oldest of the loops' latest stamps. A loop that is blocked
/// (a handler stuck in a system call, an endless loop) never stamps, and the watchdog withholds its ping.
///
/// Takes one "run this on loop i" closure per loop, so it needs no NIO: the agent passes
/// `group.makeIterator().map { loop in { work in loop.execute(work) } }`.
package final class EventLoopProbe: Sendable {
    /// Runs `work` on one event loop, soon.
    package typealias Submit = @Sendable (_ work: @escaping @Sendable () -> Void) -> Void

    private let loops: [Submit]
    private let answers: Mutex<[UInt64?]>
    private let clock: @Sendable () -> UInt64

    package init(loops: [Submit], clock: @escaping @Sendable () -> UInt64 = monotonicNanoseconds) {
        self.loops = loops
        self.answers = Mutex(Array(repeating: nil, count: loops.count))
        self.clock = clock
    }

    /// Schedules a stamp on every loop.
    package func send() {
        for (index, submit) in loops.enumerated() {
            submit { [self] in
                let now = clock()
                answers.withLock { $0[index] = now }
            }
        }
    }

    /// The oldest of the loops' latest stamps; nil while some loop has never run a probe. With no loops
    /// there is nothing to wait for: `UInt64.max`.
    package var answeredAt: UInt64? {
        answers.withLock { stamps in
            var oldest = UInt64.max
            for stamp in stamps {
                guard let stamp else { return nil }
                oldest = min(oldest, stamp)
            }
            return oldest
        }
    }
}
