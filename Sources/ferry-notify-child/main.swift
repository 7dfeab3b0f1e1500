// Child process of FerryServiceTests: speaks the notify protocol as the agent will, so the tests can
// check the datagrams that arrive at a socket of their own.
//
//   ferry-notify-child [--stall-writer-after N]
//
// Sends READY=1, runs the watchdog over a real NIO event loop group with a fake queue writer (which
// loops until it has been asked N times, then reports work waiting and stops looping), prints each
// watchdog decision on stdout, answers SIGHUP with RELOADING=1 … READY=1 and SIGTERM with STOPPING=1.
import Dispatch
import FerryService
import Glibc
import Logging
import NIOPosix
import Synchronization

let arguments = CommandLine.arguments
let stallAfter = arguments.firstIndex(of: "--stall-writer-after").flatMap { Int(arguments[$0 + 1]) } ?? Int.max

var logger = Logger(label: "ferry-notify-child")
logger.logLevel = .warning

/// How many times the watchdog has read the fake writer's heartbeat.
final class Counter: Sendable {
    private let count = Mutex(0)
    func next() -> Int { count.withLock { $0 += 1; return $0 } }
}

func say(_ line: String) {
    print(line)
    fflush(stdout)
}

do {
    guard let notifier = try ServiceNotifier.fromEnvironment(logger: logger) else {
        say("no NOTIFY_SOCKET")
        exit(3)
    }
    var watchdog = try Watchdog.Configuration.fromEnvironment(pid: getpid())
    // A 1 ms pickup bound: the fake writer's stall is seen at the first check after it begins.
    watchdog?.maxPickup = 1_000_000

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

    signal(SIGTERM, SIG_IGN)
    signal(SIGHUP, SIG_IGN)
    let terminate = DispatchSource.makeSignalSource(signal: SIGTERM)
    let hangUp = DispatchSource.makeSignalSource(signal: SIGHUP)
    hangUp.setEventHandler {
        notifier.notify(.reloading(monotonicMicroseconds: monotonicNanoseconds() / 1000, status: "reloading"))
        notifier.notify(.ready(status: "reloaded"))
        say("reloaded")
    }
    hangUp.resume()

    try notifier.send(.ready(status: "ready"))
    let task = Task { await monitor.run() }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        terminate.setEventHandler {
            terminate.cancel()
            continuation.resume()
        }
        terminate.resume()
    }
    task.cancel()
    await task.value
    try notifier.send(.stopping(status: "stopping"))
    try await group.shutdownGracefully()
    say("stopped")
} catch {
    say("error \(error)")
    exit(1)
}
