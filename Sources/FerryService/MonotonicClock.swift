#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanoseconds of `CLOCK_MONOTONIC`: the clock of the watchdog's decisions, of the queue writer's
/// heartbeat and of systemd's `MONOTONIC_USEC`. It never jumps with the wall clock; it stops while the
/// machine sleeps, as systemd's own watchdog timer does.
///
/// `NIODeadline.now().uptimeNanoseconds` and `DispatchTime.now().uptimeNanoseconds` read the same clock
/// on Linux, so another module can stamp its heartbeat without depending on this one.
package func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
