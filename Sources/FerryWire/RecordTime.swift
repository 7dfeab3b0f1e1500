import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Milliseconds since the Unix epoch that a step of the wall clock does not move: the wall clock as it
/// read at the first reading, carried on by a monotonic clock. A value with its readings passed in, so
/// that tests step the wall clock by decades in microseconds.
///
/// Why: a board without a real-time clock boots in 1970 and NTP then jumps it forward by decades; a wrong
/// NTP server steps it back. Ferry measures durations in wall time where they are stored (a record's
/// `createdAt`, a `seen` entry's time): with the raw wall clock a forward step made every `seen` entry
/// look expired at once (a retry then stored twice), made a backlog appear where there is none (the
/// fresh lane) and record ages absurd; a backward step made ages negative. Within a process these times
/// now never jump; across a restart the queue raises the clock to its newest stored time
/// (`raise(toAtLeast:monotonic:)`), so a clock that went back never makes time run backwards either.
/// What it cannot know: how long a process was down. A forward step that happens while no Ferry runs
/// is taken as time that passed.
///
/// Event times (`@timestamp`) are not these: they follow the wall clock, as the user sees it.
public struct SteadyWallClock: Sendable, Hashable {
    private var wallAtAnchor: Int64
    private var monotonicAtAnchor: Int64

    /// Anchors at `wall` (ms since the Unix epoch) read at `monotonic` (ms of a monotonic clock).
    public init(wall: Int64, monotonic: Int64) {
        wallAtAnchor = wall
        monotonicAtAnchor = monotonic
    }

    /// The time at `monotonic`: the anchor's wall time plus the monotonic time since.
    public func now(monotonic: Int64) -> Int64 {
        wallAtAnchor + (monotonic - monotonicAtAnchor)
    }

    /// Moves the clock forward so that it reads at least `time` at `monotonic`: a stored time from the
    /// future (the wall clock went back since it was stored) is never in the future of this clock.
    public mutating func raise(toAtLeast time: Int64, monotonic: Int64) {
        let current = now(monotonic: monotonic)
        if time > current { wallAtAnchor += time - current }
    }
}

/// The process's `SteadyWallClock`: record times (`RecordBuilder`'s `createdAt`), the queue's own times
/// (`seen`), and the ages Ferry reports. Anchored at its first reading.
public enum RecordTime {
    private static let clock = Mutex<SteadyWallClock?>(nil)

    /// Now, in milliseconds since the Unix epoch, never stepping with the wall clock.
    public static func now() -> Int64 {
        let monotonic = monotonicMilliseconds()
        return clock.withLock { clock in
            if clock == nil { clock = SteadyWallClock(wall: currentTimeMilliseconds(), monotonic: monotonic) }
            return clock!.now(monotonic: monotonic)
        }
    }

    /// Raises the clock to at least `time` (see `SteadyWallClock.raise(toAtLeast:monotonic:)`).
    public static func raise(toAtLeast time: Int64) {
        let monotonic = monotonicMilliseconds()
        clock.withLock { clock in
            if clock == nil { clock = SteadyWallClock(wall: currentTimeMilliseconds(), monotonic: monotonic) }
            clock!.raise(toAtLeast: time, monotonic: monotonic)
        }
    }

    /// A monotonic clock in milliseconds that also counts time suspended (`CLOCK_BOOTTIME` on Linux):
    /// a record's age goes on while the machine sleeps.
    public static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_BOOTTIME, &ts)
        #else
        clock_gettime(CLOCK_MONOTONIC, &ts)
        #endif
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
