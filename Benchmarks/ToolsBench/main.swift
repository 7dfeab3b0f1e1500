// ferry-tools benchmark: the release `ferry-tools` binary against queues made here.
//   - stats on a large backlog (default 5 GiB of 1 MiB records; stats decodes nothing),
//   - export (NDJSON out) and verify (stored bytes in) on a queue of realistic events (default 1 GiB stored),
//   - appends/s of 8 appenders alone and while `ferry-tools stats` runs in a loop next to them (ratio).
//
//   tools/bench/tools [--backlog-gib G] [--events-gib G] [--dir DIR]
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import NIOCore
import Synchronization

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
var backlogGiB = 5.0, eventsGiB = 1.0, baseDir = NSTemporaryDirectory()
do {
    let args = CommandLine.arguments
    var i = 1
    while i < args.count {
        switch args[i] {
        case "--backlog-gib" where i + 1 < args.count: backlogGiB = Double(args[i + 1]) ?? backlogGiB; i += 2
        case "--events-gib" where i + 1 < args.count: eventsGiB = Double(args[i + 1]) ?? eventsGiB; i += 2
        case "--dir" where i + 1 < args.count: baseDir = args[i + 1]; i += 2
        default:
            FileHandle.standardError.write(Data("usage: ferry-bench-tools [--backlog-gib G] [--events-gib G] [--dir DIR]\n".utf8))
            exit(2)
        }
    }
}
let (backlog, eventBytes, dir) = (backlogGiB, eventsGiB, baseDir)
let tools = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferry-tools").path
guard FileManager.default.isExecutableFile(atPath: tools) else {
    FileHandle.standardError.write(Data("ferry-bench-tools: \(tools) is missing; run tools/bench/tools\n".utf8))
    exit(1)
}
let work = dir + "/ferry-bench-tools-\(getpid())"
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func f(_ v: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", v) }
let clock = ContinuousClock()

print("ferry-bench-tools: \(ProcessInfo.processInfo.activeProcessorCount) cores, data in \(dir)")

// MARK: stats on a large backlog

do {
    let path = work + "/backlog"
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: Int(backlog * Double(1 << 30)) + (1 << 30)), logger: quiet)
    var payload = ByteBuffer()
    for _ in 0..<(1 << 17) { payload.writeInteger(UInt64.random(in: 0...UInt64.max)) }
    let record = QueueRecord(eventCount: 1000, createdAt: currentTimeMilliseconds(), uncompressedLength: 1 << 20, payload: payload)
    while Double(queue.stats.bytes) < backlog * Double(1 << 30) {
        _ = try await queue.append(EventBatch(records: Array(repeating: record, count: 32)))
    }
    let gib = Double(queue.stats.bytes) / Double(1 << 30)
    queue.close()
    var times: [Double] = []
    for _ in 0..<20 {
        let t = try await clock.measure { _ = try await run(tools, ["stats", "--json", "--data-dir", path]) }
        times.append(seconds(t) * 1000)
    }
    let baselineTimes = try await (0..<20).asyncMap { _ in seconds(try await clock.measure { _ = try await run("/bin/true", []) }) * 1000 }
    times.sort()
    let base = baselineTimes.sorted()[10]
    print("stats on \(f(gib, 2)) GiB: median \(f(times[10], 1)) ms per run of the whole process (start-up included), max \(f(times.last!, 1)) ms; /bin/true takes \(f(base, 1)) ms here")
    try? FileManager.default.removeItem(atPath: path)
}

// MARK: export and verify on realistic events

do {
    let path = work + "/events"
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 64 << 30), logger: quiet)
    let pool = realisticEventLines(count: 100_000)
    var offset = 0
    while Double(queue.stats.bytes) < eventBytes * Double(1 << 30) {
        var records: [QueueRecord] = []
        for _ in 0..<16 {
            var builder = RecordBuilder()
            for _ in 0..<1000 { builder.append(line: pool[offset]); offset = (offset + 1) % pool.count }
            records += builder.finish().records
        }
        _ = try await queue.append(EventBatch(records: records))
    }
    let stats = queue.stats
    queue.close()
    let uncompressed = Double(stats.events) * Double(pool.reduce(0) { $0 + $1.count + 1 } ) / Double(pool.count)
    let exportTime = seconds(try await clock.measure {
        let result = try await run(tools, ["export", "--data-dir", path, "-o", "/dev/null"])
        precondition(result.status == 0, result.errors)
    })
    let verifyTime = seconds(try await clock.measure {
        let result = try await run(tools, ["verify", "--data-dir", path])
        precondition(result.status == 0, result.output + result.errors)
    })
    let catTime = seconds(try await clock.measure { _ = try await run("/bin/cat", [path + "/data.mdb"]) })
    print("export: \(stats.events) events, \(f(uncompressed / 1e6)) MB of NDJSON out in \(f(exportTime, 2)) s = \(f(uncompressed / 1e6 / exportTime)) MB/s out (\(f(Double(stats.bytes) / 1e6 / exportTime)) MB/s stored in)")
    print("verify: \(f(Double(stats.bytes) / 1e6)) MB stored in \(f(verifyTime, 2)) s = \(f(Double(stats.bytes) / 1e6 / verifyTime)) MB/s of stored data (cat of data.mdb: \(f(Double(stats.bytes) / 1e6 / catTime)) MB/s)")
    try? FileManager.default.removeItem(atPath: path)
}

// MARK: appends with and without stats next to them

/// `command`: nil for appends alone, or the ferry-tools arguments run in a loop beside the appenders.
func appendRate(_ path: String, seconds: Double, command: [String]?) async throws -> (Double, Int) {
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 64 << 30), logger: quiet)
    defer { queue.close() }
    let lines = realisticEventLines(count: 1000)
    let stop = clock.now + .seconds(seconds)
    let statsRuns = Counter()
    return try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<8 {
            group.addTask {
                var events = 0
                while clock.now < stop {
                    _ = try await queue.append(EventBatch(lines: lines))
                    events += 1000
                }
                return events
            }
        }
        if let command {
            group.addTask {
                while clock.now < stop && statsRuns.value.load(ordering: .relaxed) < 1000 {
                    _ = try await run(tools, command)
                    statsRuns.value.add(1, ordering: .relaxed)
                }
                return 0
            }
        }
        let events = try await group.reduce(0, +)
        return (Double(events) / seconds, statsRuns.value.load(ordering: .relaxed))
    }
}

do {
    // The third run starts the same process as often without touching the queue (`--version`): it
    // separates the cost of starting processes on a 2-core machine from the cost of reading the queue.
    let (alone, _) = try await appendRate(work + "/load-a", seconds: 5, command: nil)
    let (together, runs) = try await appendRate(work + "/load-b", seconds: 5, command: ["stats", "--json", "--data-dir", work + "/load-b"])
    let (spawnOnly, spawnRuns) = try await appendRate(work + "/load-c", seconds: 5, command: ["--version"])
    print("appends, 8 appenders × 1000 events: alone \(f(alone)) events/s; with \(runs) `ferry-tools stats` runs beside them \(f(together)) events/s (ratio \(f(together / alone, 2))); with \(spawnRuns) `ferry-tools --version` runs (process start only) \(f(spawnOnly)) events/s (ratio \(f(spawnOnly / alone, 2)))")
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
