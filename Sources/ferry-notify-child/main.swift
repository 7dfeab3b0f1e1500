// Child process of FerryServiceTests: speaks the notify protocol as the agent will, so the tests can
// check the datagrams that arrive at a socket of their own.
//
//   ferry-notify-child [--stall-writer-after N]
//
// Sends READY=1, runs the watchdog over a real NIO event loop group with a fake queue writer (which
// loops until it has been asked N times, then reports work waiting and stops looping), prints each
// watchdog decision on stdout, answers SIGHUP with RELOADING=1 … READY=1 and SIGTERM with STOPPING=1.
import FerryService
import Foundation
import Glibc
import Logging
import NIOPosix
import Synchronization

/// How many times the watchdog has read the fake writer's heartbeat.
final class Counter: Sendable {
    private let count = Mutex(0)
    func next() -> Int { count.withLock { $0 += 1; return $0 } }
}

/// One line on stdout, written at once (no buffering between the child and the test that reads it).
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// The write end of the pipe that the signal handler writes signal numbers to.
nonisolated(unsafe) var signalPipeWriter: Int32 = -1

/// Serves SIGHUP and SIGTERM through a self-pipe: the handler (async-signal-safe: one `write`) runs on
/// whichever thread the kernel picks, a thread of ours reads the pipe. SIGHUP runs `reload`; the first
/// SIGTERM ends the returned stream.
func serveSignals(reload: @escaping @Sendable () -> Void) -> AsyncStream<Void> {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0, "pipe failed")
    signalPipeWriter = fds[1]
    let handler: @convention(c) (Int32) -> Void = { number in
        var byte = UInt8(truncatingIfNeeded: number)
        _ = write(signalPipeWriter, &byte, 1)
    }
    signal(SIGHUP, handler)
    signal(SIGTERM, handler)
    let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
    let reader = fds[0]
    let thread = Thread {
        var byte: UInt8 = 0
        while true {
            let n = read(reader, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            if Int32(byte) == SIGHUP {
                reload()
            } else {
                continuation.finish()
                return
            }
        }
    }
    thread.start()
    return stream
}

func main() async -> Int32 {
    let arguments = CommandLine.arguments
    let stallAfter = arguments.firstIndex(of: "--stall-writer-after").flatMap { Int(arguments[$0 + 1]) } ?? Int.max
    var logger = Logger(label: "ferry-notify-child")
    logger.logLevel = .warning
    do {
        guard let notifier = try ServiceNotifier.fromEnvironment(logger: logger) else {
            say("no NOTIFY_SOCKET")
            return 3
        }
        var watchdog = try Watchdog.Configuration.fromEnvironment(pid: getpid())
        // A 1 ms pickup bound: the fake writer's stall is seen at the first check after it begins.
        watchdog?.maxPickup = 1_000_000

        let terminated = serveSignals {
            notifier.notify(.reloading(monotonicMicroseconds: monotonicNanoseconds() / 1000, status: "reloading"))
            notifier.notify(.ready(status: "reloaded"))
            say("reloaded")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let probe = EventLoopProbe(loops: group.makeIterator().map { loop in { work in loop.execute(work) } })
        let started = monotonicNanoseconds()
        let asked = Counter()
        let writer: @Sendable () -> WriterHeartbeat = {
            let count = asked.next()
            if count <= stallAfter { return WriterHeartbeat(loops: UInt64(count)) }
            return WriterHeartbeat(loops: UInt64(stallAfter), waitingSince: started)
        }
        let monitor = ServiceMonitor(
            notifier: notifier, watchdog: watchdog, eventLoops: probe, writer: writer,
            status: { "ready; queue 0 records" }, logger: logger,
            observe: { decision in say(decision.ping ? "check ping" : "check withheld \(decision.problem!)") })

        try notifier.send(.ready(status: "ready"))
        let task = Task { await monitor.run() }
        for await _ in terminated {}
        task.cancel()
        await task.value
        try notifier.send(.stopping(status: "stopping"))
        try await group.shutdownGracefully()
        say("stopped")
        return 0
    } catch {
        say("error \(error)")
        return 1
    }
}

exit(await main())
