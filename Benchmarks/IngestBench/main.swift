// Ingest benchmark: the HTTP ingest in this process, driven by wrk (a separate process, from Debian's
// packages) over loopback. Scenarios of the ingest issue:
//   - 1000-event gzip NDJSON requests over 8 connections,
//   - single-event NDJSON requests over 64 connections,
// each reported with events/s, requests/s, latency p50/p99, the ingest's peak RSS, and the ratio to a
// baseline measured in the same run: the same batches appended to the queue directly, without HTTP.
// And a second baseline for single events: a bare Hummingbird server that answers the same POST with
// 200 after reading the body, storing nothing (the ceiling of an HTTP server here).
//
//   tools/bench/ingest [--seconds S] [--dir DIR]
import FerryIngest
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

let (seconds, baseDir) = { () -> (Int, String) in
    var seconds = 5
    var baseDir = NSTemporaryDirectory()
    var i = 1
    let args = CommandLine.arguments
    while i < args.count {
        switch args[i] {
        case "--seconds" where i + 1 < args.count: seconds = Int(args[i + 1]) ?? seconds; i += 2
        case "--dir" where i + 1 < args.count: baseDir = args[i + 1]; i += 2
        default:
            FileHandle.standardError.write(Data("usage: ferry-bench-ingest [--seconds S] [--dir DIR]\n".utf8))
            exit(2)
        }
    }
    return (seconds, baseDir)
}()
guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else {
    FileHandle.standardError.write(Data("ferry-bench-ingest: wrk is missing; run tools/bench/ingest (it installs wrk)\n".utf8))
    exit(1)
}

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
let work = baseDir + "/ferry-bench-ingest-\(getpid())"
try? FileManager.default.removeItem(atPath: work)
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func peakRSSMiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
    return (Int(line.split(separator: " ").first { Int($0) != nil } ?? "0") ?? 0) / 1024
}

/// Resets the peak RSS so that each scenario reports its own.
func resetPeakRSS() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }

// Bodies: realistic ~130-byte events.
let pool = realisticEventLines(count: 1000)
var ndjson = ByteBuffer()
for line in pool { ndjson.writeBytes(line); ndjson.writeInteger(UInt8(ascii: "\n")) }
var gzipBody = ByteBuffer()
ndjson.withUnsafeReadableBytes { Gzip.compress($0, into: &gzipBody) }
try Data(gzipBody.readableBytesView).write(to: URL(fileURLWithPath: work + "/batch.ndjson.gz"))
try Data(pool[0] + [0x0A]).write(to: URL(fileURLWithPath: work + "/single.ndjson"))

func luaScript(body: String, gzip: Bool) -> String {
    """
    wrk.method = "POST"
    local f = io.open("\(body)", "rb")
    wrk.body = f:read("*a")
    f:close()
    wrk.headers["Content-Type"] = "application/x-ndjson"
    \(gzip ? #"wrk.headers["Content-Encoding"] = "gzip""# : "")
    done = function(summary, latency, requests)
      local e = summary.errors
      io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
        e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))
    end
    """
}

struct Scenario {
    let name: String
    let connections: Int
    let threads: Int
    let eventsPerRequest: Int
    let body: String
    let gzip: Bool
    /// What the input seam adds to each event. `.none` stores events exactly as sent (the comparison with
    /// earlier versions); `EventStamp()` is the default of a configured input: `@timestamp` added to every
    /// event here, since the benchmark's events carry none.
    var stamp: EventStamp = .none
    /// The bare Hummingbird server instead of the ingest: reads the body, answers 200, stores nothing.
    var bare = false
}

let scenarios = [
    Scenario(name: "1000-event gzip", connections: 8, threads: 1, eventsPerRequest: 1000, body: work + "/batch.ndjson.gz", gzip: true),
    Scenario(name: "1000-event gzip +ts", connections: 8, threads: 1, eventsPerRequest: 1000, body: work + "/batch.ndjson.gz", gzip: true, stamp: EventStamp()),
    Scenario(name: "1-event", connections: 64, threads: 2, eventsPerRequest: 1, body: work + "/single.ndjson", gzip: false),
    Scenario(name: "1-event +ts", connections: 64, threads: 2, eventsPerRequest: 1, body: work + "/single.ndjson", gzip: false, stamp: EventStamp()),
    Scenario(name: "1-event bare HB", connections: 64, threads: 2, eventsPerRequest: 1, body: work + "/single.ndjson", gzip: false, bare: true),
]

/// The bare server of the single-event baseline, as a service.
func bareServer(listening: ListeningPort) -> some Service {
    let router = Router()
    router.post("/") { request, _ -> Response in
        _ = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"stored":1}"#)))
    }
    return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bare"),
                       onServerRunning: { channel in listening.set(channel.localAddress?.port ?? 0) }, logger: quiet)
}

// MARK: Baseline: the same batches appended to the queue directly, same concurrency, same run.

func directAppendRate(appenders: Int, eventsPerBatch: Int, seconds: Int) async throws -> Double {
    let path = work + "/direct-\(appenders)"
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 32 << 30), logger: quiet)
    defer { queue.close(); try? FileManager.default.removeItem(atPath: path) }
    let lines = Array(pool.prefix(eventsPerBatch))
    let deadline = now() + Double(seconds)
    let start = now()
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<appenders {
            group.addTask {
                var n = 0
                while now() < deadline {
                    _ = try await queue.append(EventBatch(lines: lines))
                    n += eventsPerBatch
                }
                return n
            }
        }
        return try await group.reduce(0, +)
    }
    return Double(total) / (now() - start)
}

// MARK: Run

print("ferry-bench-ingest: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(seconds) s per scenario, wrk on loopback, data in \(baseDir)")
print("events: \(pool.reduce(0) { $0 + $1.count } / pool.count) bytes on average; 1000-event body \(gzipBody.readableBytes) bytes gzip")
print("")
print("scenario             conns  requests/s  events/s    p50-ms  p99-ms  errors  peak-RSS-MiB  cpu-us/event  direct-append-events/s  http/direct  wrk-cpu-us/req  idle-%  steal-%  stored-B/event  events/record")
var cpuPerEvent: [String: Double] = [:]
/// Per scenario: CPU µs per request of this process and of wrk, and the machine's idle and stolen shares
/// while wrk ran: what bounds the requests/s when both share the cores.
var budget: [String: (server: Double, wrk: Double, idle: Double, steal: Double)] = [:]
var requestsPerSecond: [String: Double] = [:]
for scenario in scenarios {
    let dir = work + "/queue-\(scenario.connections)"
    let queue = try Queue.open(at: dir, configuration: QueueConfiguration(maxBytes: 32 << 30), logger: quiet)
    let service: any Service
    let listeningPort: @Sendable () async -> Int
    if scenario.bare {
        let listening = ListeningPort()
        service = bareServer(listening: listening)
        listeningPort = { await listening.value }
    } else {
        let server = try IngestServer(configuration: IngestConfiguration(port: 0), queue: queue, stamp: scenario.stamp, logger: quiet)
        service = server
        listeningPort = { await server.listeningPort() }
    }
    let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: quiet))
    let runTask = Task { try await group.run() }
    let port = await listeningPort()
    let script = work + "/script-\(scenario.connections).lua"
    try luaScript(body: scenario.body, gzip: scenario.gzip).write(toFile: script, atomically: true, encoding: .utf8)
    resetPeakRSS()
    let cpuBefore = cpuSeconds(), wrkBefore = childrenCPUSeconds(), machineBefore = MachineCPU.now()
    let result = try await run("/usr/bin/wrk", ["-t\(scenario.threads)", "-c\(scenario.connections)", "-d\(seconds)s",
                                                "--timeout", "10s", "-s", script, "http://127.0.0.1:\(port)/"])
    let rss = peakRSSMiB()
    let cpu = cpuSeconds() - cpuBefore
    let wrkCPU = childrenCPUSeconds() - wrkBefore
    let machine = MachineCPU.now().shares(since: machineBefore)
    await group.triggerGracefulShutdown()
    _ = try? await runTask.value
    let stats = queue.stats
    let stored = stats.appendedEvents
    queue.close()
    try? FileManager.default.removeItem(atPath: dir)
    guard let line = result.output.split(separator: "\n").first(where: { $0.hasPrefix("RESULT ") }) else {
        print("\(scenario.name): wrk gave no result:\n\(result.output)\(result.errors)")
        continue
    }
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    let (requests, duration, errors, p50, p99) = (fields[0], fields[1] / 1e6, fields[2], fields[3] / 1000, fields[4] / 1000)
    let events = requests * Double(scenario.eventsPerRequest)
    cpuPerEvent[scenario.name] = cpu / events * 1e6
    requestsPerSecond[scenario.name] = requests / duration
    budget[scenario.name] = (cpu / requests * 1e6, wrkCPU / requests * 1e6, machine.idle, machine.steal)
    // The bare server stores nothing: no direct-append baseline, no check of the queue.
    let direct = scenario.bare ? .nan : try await directAppendRate(appenders: scenario.connections, eventsPerBatch: scenario.eventsPerRequest, seconds: seconds)
    print(scenario.name.padding(toLength: 21, withPad: " ", startingAt: 0)
        + String(scenario.connections).padding(toLength: 7, withPad: " ", startingAt: 0)
        + f(requests / duration).padding(toLength: 12, withPad: " ", startingAt: 0)
        + f(events / duration).padding(toLength: 12, withPad: " ", startingAt: 0)
        + f(p50, 2).padding(toLength: 8, withPad: " ", startingAt: 0)
        + f(p99, 2).padding(toLength: 8, withPad: " ", startingAt: 0)
        + f(errors).padding(toLength: 8, withPad: " ", startingAt: 0)
        + String(rss).padding(toLength: 14, withPad: " ", startingAt: 0)
        + f(cpu / events * 1e6, 2).padding(toLength: 14, withPad: " ", startingAt: 0)
        + f(direct).padding(toLength: 24, withPad: " ", startingAt: 0)
        + f(events / duration / direct, 2).padding(toLength: 13, withPad: " ", startingAt: 0)
        + f(wrkCPU / requests * 1e6, 2).padding(toLength: 16, withPad: " ", startingAt: 0)
        + f(machine.idle * 100, 1).padding(toLength: 8, withPad: " ", startingAt: 0)
        + f(machine.steal * 100, 1).padding(toLength: 9, withPad: " ", startingAt: 0)
        + (scenario.bare ? "nan" : f(Double(stats.bytes) / Double(max(stats.events, 1)), 1)).padding(toLength: 16, withPad: " ", startingAt: 0)
        + (scenario.bare ? "nan" : f(Double(stats.events) / Double(max(stats.records, 1)), 1)))
    // Every 200 wrk counted was a durable append: the queue must hold at least that many events.
    if !scenario.bare && Double(stored) < events - errors * Double(scenario.eventsPerRequest) {
        print("  WARNING: the queue holds \(stored) events, fewer than the \(Int(events)) acknowledged")
    }
}
print("")
if let ingest = requestsPerSecond["1-event"], let bare = requestsPerSecond["1-event bare HB"] {
    print("single-event requests/s of the ingest over a bare Hummingbird server answering 200: \(f(ingest / bare, 3)) (\(f(ingest)) / \(f(bare)))")
}
// The cores are shared by the server and wrk: CPU per request of both bounds the requests/s at full use.
let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
for name in ["1-event", "1-event bare HB"] {
    if let b = budget[name], let rate = requestsPerSecond[name] {
        let bound = cores * (1 - b.steal) / ((b.server + b.wrk) / 1e6)
        print("\(name): CPU per request \(f(b.server, 1)) us here + \(f(b.wrk, 1)) us in wrk; at full use of \(Int(cores)) cores less steal: \(f(bound)) requests/s; measured \(f(rate)) with \(f(b.idle * 100, 1)) % idle, \(f(b.steal * 100, 1)) % stolen")
    }
}
for (plain, stamped) in [("1000-event gzip", "1000-event gzip +ts"), ("1-event", "1-event +ts")] {
    if let a = cpuPerEvent[plain], let b = cpuPerEvent[stamped] {
        print("@timestamp added to every event: \(f(b / a, 3))x the CPU per event of \(plain) (\(f(a, 2)) -> \(f(b, 2)) us)")
    }
}
