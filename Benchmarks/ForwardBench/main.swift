// Forward benchmark: drain a backlog (default 2M events of ~130 bytes, 1000 per record) from a queue to
// local receivers that count events and discard them, through the balancer and the http output.
// Receivers run as child processes (this executable with `receive PORT`), so the CPU reported is the
// agent's own. Two scenarios in one run: three healthy receivers, and the same with one of them
// blackholed behind a fault proxy; the second is reported as a ratio of the first.
//
//   tools/bench/forward [--events N] [--dir DIR]
import FerryForward
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
let arguments = CommandLine.arguments

// MARK: Receiver mode: count events (newlines of the decompressed body) and discard them.

if arguments.count == 3, arguments[1] == "receive", let port = Int(arguments[2]) {
    let events = Atomic<Int>(0)
    let router = Router()
    router.post("/") { request, _ -> Response in
        let inflater = try GzipInflater(maxOutputBytes: 1 << 40)
        var scratch = ByteBuffer()
        var count = 0
        for try await chunk in request.body {
            scratch.clear()
            try chunk.withUnsafeReadableBytes { try inflater.inflate($0, into: &scratch) }
            scratch.withUnsafeReadableBytes { bytes in
                var start = bytes.baseAddress!
                var remaining = bytes.count
                while remaining > 0, let hit = memchr(start, 0x0A, remaining) {
                    count += 1
                    let consumed = UnsafeRawPointer(hit) - start + 1
                    start += consumed
                    remaining -= consumed
                }
            }
        }
        try inflater.finish()
        events.add(count, ordering: .relaxed)
        return Response(status: .ok)
    }
    router.get("/count") { _, _ in "\(events.load(ordering: .relaxed))" }
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: quiet)
    try await app.runService(gracefulShutdownSignals: [.sigterm])
    exit(0)
}

// MARK: Driver

var totalEvents = 2_000_000
var baseDir = NSTemporaryDirectory()
do {
    var i = 1
    while i < arguments.count {
        switch arguments[i] {
        case "--events" where i + 1 < arguments.count: totalEvents = Int(arguments[i + 1]) ?? totalEvents; i += 2
        case "--dir" where i + 1 < arguments.count: baseDir = arguments[i + 1]; i += 2
        default:
            FileHandle.standardError.write(Data("usage: ferry-bench-forward [--events N] [--dir DIR]\n".utf8))
            exit(2)
        }
    }
}
let events = totalEvents
let work = baseDir + "/ferry-bench-forward-\(getpid())"
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

func receivedCount(_ port: Int) async throws -> Int {
    let result = try await run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/count"])
    return Int(result.output) ?? -1
}

/// Builds a queue holding `events` events in 1000-event records.
func makeBacklog(_ path: String) async throws -> Queue {
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 16 << 30), logger: quiet)
    let pool = realisticEventLines(count: 1000)
    var appended = 0
    while appended < events {
        var batch: [QueueRecord] = []
        for _ in 0..<32 where appended < events {
            batch += EventBatch(lines: pool).records
            appended += 1000
        }
        _ = try await queue.append(EventBatch(records: batch))
    }
    return queue
}

struct DrainResult {
    var seconds: Double
    var cpu: Double
    var received: Int
    var delivered: UInt64
    var sent: [UInt64]
    var hedges: [UInt64]
}

func drain(_ queue: Queue, ports: [Int], blackhole: Bool) async throws -> DrainResult {
    var targets = ports
    var proxy: FaultProxy?
    if blackhole {
        let p = try FaultProxy(upstreamPort: ports[0])
        p.mode = .blackhole
        proxy = p
        targets[0] = p.port
    }
    defer { proxy?.stop() }
    var configuration = HTTPOutputConfiguration(hosts: targets.map { "127.0.0.1:\($0)" })
    configuration.requestTimeoutSeconds = 2
    let forwarder = try HTTPForwarder(queue: queue, configuration: configuration, logger: quiet)
    let group = ServiceGroup(configuration: .init(services: [.init(service: forwarder)], logger: quiet))
    let before = queue.stats.deliveredEvents
    let cpu0 = cpuSeconds()
    let start = ContinuousClock.now
    let task = Task { try await group.run() }
    while queue.stats.records > 0 {
        await queue.waitForAppend(timeout: .milliseconds(5))  // a short wait between checks of the drain
    }
    let elapsed = ContinuousClock.now - start
    let cpu = cpuSeconds() - cpu0
    let sent = forwarder.hostStatus().map(\.sent)
    let hedges = forwarder.hostStatus().map(\.hedges)
    await group.triggerGracefulShutdown()
    _ = try? await task.value
    var received = 0
    for port in ports { received += try await receivedCount(port) }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return DrainResult(seconds: seconds, cpu: cpu, received: received, delivered: queue.stats.deliveredEvents - before, sent: sent, hedges: hedges)
}

func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }

print("ferry-bench-forward: \(ProcessInfo.processInfo.activeProcessorCount) cores, backlog of \(events) events (~130 bytes, 1000 per record), receivers in child processes")
var results: [(String, DrainResult)] = []
for (name, blackhole) in [("3 healthy receivers", false), ("1 of 3 blackholed", true)] {
    let ports = (0..<3).map { _ in freePort() }
    let receivers = try ports.map { try ChildProcess(executable: CommandLine.arguments[0], arguments: ["receive", "\($0)"]) }
    defer { receivers.forEach { $0.kill(SIGTERM) } }
    // Wait until every receiver answers.
    for port in ports {
        let deadline = ContinuousClock.now + .seconds(20)
        while try await receivedCount(port) < 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))  // polling a receiver's start, with a deadline
        }
    }
    let path = work + "/queue-\(results.count)"
    let queue = try await makeBacklog(path)
    let result = try await drain(queue, ports: ports, blackhole: blackhole)
    queue.close()
    try? FileManager.default.removeItem(atPath: path)
    results.append((name, result))
}
print("")
print("scenario             events/s     seconds  agent-CPU-s  CPU/wall  received   lost  dup    ratio  requests per host (hedges)")
let baseline = Double(results[0].1.received) / results[0].1.seconds
for (name, r) in results {
    let rate = Double(r.received) / r.seconds
    print(name.padding(toLength: 21, withPad: " ", startingAt: 0)
        + f(rate).padding(toLength: 13, withPad: " ", startingAt: 0)
        + f(r.seconds, 2).padding(toLength: 9, withPad: " ", startingAt: 0)
        + f(r.cpu, 2).padding(toLength: 13, withPad: " ", startingAt: 0)
        + f(r.cpu / r.seconds, 2).padding(toLength: 10, withPad: " ", startingAt: 0)
        + String(r.received).padding(toLength: 11, withPad: " ", startingAt: 0)
        + String(max(0, events - r.received)).padding(toLength: 6, withPad: " ", startingAt: 0)
        + String(max(0, r.received - events)).padding(toLength: 7, withPad: " ", startingAt: 0)
        + f(rate / baseline, 2).padding(toLength: 7, withPad: " ", startingAt: 0)
        + r.sent.map(String.init).joined(separator: "/") + " (\(r.hedges.map(String.init).joined(separator: "/")))")
}
