// Queue benchmark: raw fsync rate of the disk (the baseline), durable appends for 1/8/64 concurrent
// appenders with 1- and 1000-event batches, commit latency, lease+ack drain rate, open time with a
// backlog, and RSS. Figures are reported as ratios to the baseline measured in the same run, because the
// disk's fsync rate swings widely between runs on shared machines.
//
//   tools/bench/queue [--seconds S] [--open-backlog-gib G] [--dir DIR]
//   tools/bench/queue --outputs [--seconds S] [--rounds N]: named outputs, each figure a ratio to one output
//   measured in the same run (alternating rounds, median): ingest with 3 outputs draining, drain of a
//   backlog by 2 outputs, and disk bytes per stored byte.
//   tools/bench/queue --gzip [--rounds N]: one record's compression (a gzip member) of 150 B to 8 KiB of
//   NDJSON at zlib memLevel 1, 4 and 8 (and stored, level 0), time and size as ratios to memLevel 8 in the
//   same run (alternating rounds, median), and which level `Gzip.compress` takes for each size.
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import NIOCore

struct Options {
    var seconds = 3.0
    var openBacklogGiB = 1.0
    var dir = NSTemporaryDirectory()
    /// Run only this append scenario, `APPENDERSxEVENTS` (for profiling).
    var only: String?
    /// Run the named-outputs figures instead.
    var outputs = false
    /// Run the gzip memLevel comparison instead.
    var gzip = false
    var rounds = 3

    init(_ arguments: [String]) {
        var i = 1
        func value() -> String {
            i += 1
            guard i < arguments.count else { usage() }
            return arguments[i]
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--seconds": seconds = Double(value()) ?? { usage() }()
            case "--open-backlog-gib": openBacklogGiB = Double(value()) ?? { usage() }()
            case "--dir": dir = value()
            case "--only": only = value()
            case "--outputs": outputs = true
            case "--gzip": gzip = true
            case "--rounds": rounds = Int(value()) ?? { usage() }()
            default: usage()
            }
            i += 1
        }
    }
}

func usage() -> Never {
    FileHandle.standardError.write(Data("usage: ferry-bench-queue [--seconds S] [--open-backlog-gib G] [--dir DIR] [--only APPENDERSxEVENTS] | --outputs [--seconds S] [--rounds N] [--dir DIR] | --gzip [--rounds N]\n".utf8))
    exit(2)
}

// `--make-backlog DIR GIB`: fill a queue directory with GIB of 1 MiB records and exit (for tools/bench/agent).
if CommandLine.arguments.count == 4, CommandLine.arguments[1] == "--make-backlog", let gib = Double(CommandLine.arguments[3]) {
    let path = CommandLine.arguments[2]
    let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: Int(gib * Double(1 << 30)) + (1 << 30)), logger: quiet)
    var payload = ByteBuffer()
    for _ in 0..<(1 << 17) { payload.writeInteger(UInt64.random(in: 0...UInt64.max)) }
    let record = QueueRecord(eventCount: 1000, createdAt: currentTimeMilliseconds(), uncompressedLength: 1 << 20, payload: payload)
    while Double(queue.stats.bytes) < gib * Double(1 << 30) {
        _ = try await queue.append(EventBatch(records: Array(repeating: record, count: 32)))
    }
    print("backlog of \(queue.stats.bytes) bytes in \(queue.stats.records) records at \(path)")
    queue.close()
    exit(0)
}

let options = Options(CommandLine.arguments)
let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func rss() -> (current: Int, peak: Int) {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first { Int($0) != nil } ?? "0") ?? 0
    }
    return (field("VmRSS:") / 1024, field("VmHWM:") / 1024)
}

func makeDir(_ name: String) -> String {
    let path = options.dir + "/ferry-bench-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: path)
    return path
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

// MARK: 1. Baseline: the disk's raw fsync rate

func rawFsyncRate(seconds: Double) -> Double {
    let path = makeDir("fsync")
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    defer { close(fd); unlink(path) }
    let block = [UInt8](repeating: 0x5A, count: 4096)
    var count = 0
    let start = now()
    while now() - start < seconds {
        _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t(count % 256) * 4096) }
        fdatasync(fd)
        count += 1
    }
    return Double(count) / (now() - start)
}

// MARK: 2. Durable appends

struct AppendResult {
    var appenders: Int
    var batchEvents: Int
    var appends: Int
    var events: Int
    var elapsed: Double
    var p50: Double
    var p99: Double
    var commits: UInt64
}

final class LatencyBox: @unchecked Sendable {
    var values: [[Double]]
    init(_ n: Int) { values = Array(repeating: [], count: n) }
}

func runAppends(appenders: Int, batchEvents: Int, seconds: Double) async throws -> (AppendResult, String) {
    let path = makeDir("append-\(appenders)x\(batchEvents)")
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 16 << 30), logger: quiet)
    let pool = realisticEventLines(count: 100_000)
    let latencies = LatencyBox(appenders)
    let deadline = now() + seconds
    let start = now()
    let counts = try await withThrowingTaskGroup(of: Int.self) { group in
        for task in 0..<appenders {
            group.addTask {
                var done = 0
                var offset = (task * 7919) % pool.count
                var local: [Double] = []
                local.reserveCapacity(100_000)
                while now() < deadline {
                    // Encoding (gzip) is part of the cost of an append, as it is for the ingest.
                    var builder = RecordBuilder()
                    for _ in 0..<batchEvents {
                        builder.append(line: pool[offset])
                        offset = offset + 1 == pool.count ? 0 : offset + 1
                    }
                    let batch = builder.finish()
                    let t0 = now()
                    _ = try await queue.append(batch)
                    local.append(now() - t0)
                    done += 1
                }
                latencies.values[task] = local
                return done
            }
        }
        return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    let elapsed = now() - start
    let stats = queue.stats
    queue.close()
    let all = latencies.values.flatMap { $0 }.sorted()
    let appends = counts.reduce(0, +)
    return (AppendResult(appenders: appenders, batchEvents: batchEvents, appends: appends, events: appends * batchEvents,
                         elapsed: elapsed, p50: percentile(all, 0.5), p99: percentile(all, 0.99), commits: stats.groupCommits), path)
}

// MARK: 3. Drain: lease + acknowledge until empty

func drain(path: String) async throws -> (records: Int, events: Int, elapsed: Double) {
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: 16 << 30), logger: quiet)
    defer { queue.close() }
    var records = 0, events = 0
    let start = now()
    while true {
        let lease = try queue.lease(maxRecords: 1024, maxBytes: 8 << 20)
        if lease.isEmpty { break }
        records += lease.records.count
        events += lease.eventCount
        try await queue.acknowledge(lease)
    }
    return (records, events, now() - start)
}

// MARK: 4. Open with a backlog

func openWithBacklog(gib: Double) async throws -> (bytes: UInt64, records: Int, fill: Double, opens: [Double]) {
    let path = makeDir("backlog")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let target = UInt64(gib * Double(1 << 30))
    let queue = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: Int(target) + (1 << 30)), logger: quiet)
    // 1 MiB records of random bytes: open never decodes payloads, and random bytes make the file as large as
    // the backlog without spending minutes in gzip.
    var payload = ByteBuffer()
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<(1 << 17) { payload.writeInteger(rng.next() as UInt64) }
    let record = QueueRecord(eventCount: 1000, createdAt: currentTimeMilliseconds(), uncompressedLength: 1 << 20, payload: payload)
    let batch = EventBatch(records: Array(repeating: record, count: 32))
    let fillStart = now()
    while queue.stats.bytes < target {
        _ = try await queue.append(batch)
    }
    let fill = now() - fillStart
    let stats = queue.stats
    queue.close()
    var opens: [Double] = []
    for _ in 0..<5 {
        let t0 = now()
        let reopened = try Queue.open(at: path, configuration: QueueConfiguration(maxBytes: Int(target) + (1 << 30)), logger: quiet)
        opens.append(now() - t0)
        precondition(reopened.stats.records == stats.records)
        reopened.close()
    }
    return (stats.bytes, stats.records, fill, opens.sorted())
}

// MARK: 5. Named outputs

/// A queue with `count` outputs (o0, o1, ...).
func openWithOutputs(_ path: String, _ count: Int) throws -> Queue {
    var configuration = QueueConfiguration(maxBytes: 16 << 30)
    configuration.consumers = (0..<count).map { ConsumerSettings(name: "o\($0)") }
    return try Queue.open(at: path, configuration: configuration, logger: quiet)
}

/// Leases and acknowledges for `consumer` until `stop()` and nothing is left; returns the events it got.
func follow(_ consumer: Consumer, until stop: @escaping @Sendable () -> Bool) async throws -> Int {
    var events = 0
    while true {
        let lease = try consumer.lease(maxRecords: 1024, maxBytes: 8 << 20)
        if lease.isEmpty {
            if stop() { return events }
            await consumer.waitForAppend(timeout: .milliseconds(10))
            continue
        }
        events += lease.eventCount
        try await consumer.acknowledge(lease)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    func get() -> Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// 64 appenders of 1-event batches (the single-event ingest's path) for `seconds`, while `outputs` outputs
/// follow the queue. Returns events appended per second.
func ingestWithOutputs(_ outputs: Int, seconds: Double) async throws -> Double {
    let path = makeDir("outputs-ingest-\(outputs)")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let queue = try openWithOutputs(path, outputs)
    defer { queue.close() }
    let pool = realisticEventLines(count: 10_000)
    let done = Flag()
    let start = now()
    let deadline = start + seconds
    let appended = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
        for o in 0..<outputs {
            let consumer = try queue.consumer(named: "o\(o)")
            group.addTask { (try await follow(consumer) { done.get() }, false) }
        }
        for task in 0..<64 {
            group.addTask {
                var count = 0
                var offset = task * 97 % pool.count
                while now() < deadline {
                    var builder = RecordBuilder()
                    builder.append(line: pool[offset])
                    offset = (offset + 1) % pool.count
                    _ = try await queue.append(builder.finish())
                    count += 1
                }
                return (count, true)
            }
        }
        var appended = 0, appenders = 64
        for try await (count, isAppender) in group where isAppender {
            appended += count
            appenders -= 1
            if appenders == 0 { done.set() }
        }
        return appended
    }
    return Double(appended) / (now() - start)
}

/// A backlog of 1000-event records, then `outputs` outputs drain it concurrently. Returns the events per
/// second each output delivered (its whole backlog over the time until all were done), and the disk
/// bytes used per stored byte before the drain.
func drainWithOutputs(_ outputs: Int, events: Int) async throws -> (perOutput: Double, diskPerStored: Double) {
    let path = makeDir("outputs-drain-\(outputs)")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let queue = try openWithOutputs(path, outputs)
    defer { queue.close() }
    let pool = realisticEventLines(count: 10_000)
    var offset = 0
    for _ in 0..<(events / 1000) {
        var builder = RecordBuilder()
        for _ in 0..<1000 { builder.append(line: pool[offset]); offset = (offset + 1) % pool.count }
        _ = try await queue.append(builder.finish())
    }
    let stats = queue.stats
    let diskPerStored = Double(stats.mapUsedBytes) / Double(max(stats.bytes, 1))
    let start = now()
    let delivered = try await withThrowingTaskGroup(of: Int.self) { group in
        for o in 0..<outputs {
            let consumer = try queue.consumer(named: "o\(o)")
            group.addTask { try await follow(consumer) { true } }
        }
        return try await group.reduce(0, +)
    }
    precondition(delivered == events * outputs, "delivered \(delivered) of \(events * outputs)")
    return (Double(events) / (now() - start), diskPerStored)
}

if options.outputs {
    print("ferry-bench-queue --outputs: \(ProcessInfo.processInfo.activeProcessorCount) cores, data in \(options.dir), \(f(options.seconds, 1)) s per ingest scenario, \(options.rounds) rounds")
    var ingest: [(one: Double, three: Double)] = []
    var drain: [(one: Double, two: Double)] = []
    var disk: [(one: Double, two: Double)] = []
    for round in 1...options.rounds {
        let one = try await ingestWithOutputs(1, seconds: options.seconds)
        let three = try await ingestWithOutputs(3, seconds: options.seconds)
        ingest.append((one, three))
        let d1 = try await drainWithOutputs(1, events: 2_000_000)
        let d2 = try await drainWithOutputs(2, events: 2_000_000)
        drain.append((d1.perOutput, d2.perOutput))
        disk.append((d1.diskPerStored, d2.diskPerStored))
        print("round \(round): ingest 64x1 events/s with 1 output \(f(one)), with 3 \(f(three)); drain events/s per output, 1 output \(f(d1.perOutput)), 2 outputs \(f(d2.perOutput)); disk/stored 1 output \(f(d1.diskPerStored, 3)), 2 outputs \(f(d2.diskPerStored, 3))")
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print("")
    print("median of \(options.rounds) rounds, as ratios to one output in the same run:")
    print("ingest (64 appenders, 1-event batches) with 3 outputs following / with 1: \(f(median(ingest.map { $0.three / $0.one }), 3))")
    print("drain of a 2M-event backlog, per output, 2 outputs at once / 1 alone:   \(f(median(drain.map { $0.two / $0.one }), 3))")
    print("disk bytes per stored byte, 2 outputs / 1 (one copy, whatever the outputs): \(f(median(disk.map { $0.two / $0.one }), 3))")
    exit(0)
}

if options.gzip {
    // The first `size` bytes of realistic NDJSON, from a different place each time, compressed as one member.
    var ndjson: [UInt8] = []
    for line in realisticEventLines(count: 20_000) { ndjson += line + [0x0A] }
    let sizes = [150, 250, 400, 1000, 2000, 4000, 8000]
    let levels: [Int32] = [1, 4, 8]
    let members = 20_000
    func measure(size: Int, memoryLevel: Int32, level: Int32 = Gzip.defaultLevel) -> (microseconds: Double, bytes: Double) {
        var out = ByteBuffer()
        out.reserveCapacity(size * 2 + 64)
        var total = 0
        let start = now()
        ndjson.withUnsafeBytes { all in
            for i in 0..<members {
                let offset = (i &* 7919) % (all.count - size)
                out.clear()
                Gzip.compress(UnsafeRawBufferPointer(rebasing: all[offset..<(offset + size)]), level: level, memoryLevel: memoryLevel, into: &out)
                total += out.readableBytes
            }
        }
        return ((now() - start) / Double(members) * 1e6, Double(total) / Double(members))
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    func row(_ size: Int, _ name: String, _ time: Double, _ bytes: Double, _ baseTime: Double, _ baseBytes: Double) {
        let cells = [String(size), name, f(time, 2), f(bytes), f(time / baseTime, 2)]
        print(cells.map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined() + f(bytes / baseBytes, 3))
    }
    let rounds = options.rounds
    print("ferry-bench-queue --gzip: one gzip member (level \(Gzip.defaultLevel)) of realistic NDJSON, \(members) members per size and memLevel, \(rounds) alternating rounds")
    print(["size B", "memLevel", "us/member", "bytes out", "time vs 8"].map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined() + "size vs 8")
    for size in sizes {
        var figures: [Int32: [(microseconds: Double, bytes: Double)]] = [:]
        var stored: [(microseconds: Double, bytes: Double)] = []
        for _ in 0..<rounds {
            for level in levels { figures[level, default: []].append(measure(size: size, memoryLevel: level)) }
            stored.append(measure(size: size, memoryLevel: 4, level: 0))
        }
        let base = median(figures[8]!.map(\.microseconds))
        for level in levels {
            let time = median(figures[level]!.map(\.microseconds))
            let bytes = figures[level]![0].bytes
            row(size, String(level), time, bytes, base, figures[8]![0].bytes)
        }
        row(size, "level 0", median(stored.map(\.microseconds)), stored[0].bytes, base, figures[8]![0].bytes)
    }
    print("Gzip.compress takes memLevel 4 up to \(Gzip.smallInput) bytes and 8 above")
    exit(0)
}

// MARK: Run

func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }

print("ferry-bench-queue: \(ProcessInfo.processInfo.activeProcessorCount) cores, data in \(options.dir), \(f(options.seconds, 1)) s per scenario")
let baseline = rawFsyncRate(seconds: 2)
print("baseline: raw fsync rate (4 KiB pwrite + fdatasync): \(f(baseline)) /s")
let sample = realisticEventLines(count: 1000)
let sampleBatch = EventBatch(lines: sample)
print("events: \(sample.reduce(0) { $0 + $1.count } / sample.count) bytes on average, gzip level \(Gzip.defaultLevel) ratio \(f(Double(sampleBatch.records[0].uncompressedLength) / Double(sampleBatch.records[0].payload.readableBytes), 1)):1")
print("")
print("appenders  batch  appends/s   events/s  x-raw-fsync  commit-p50-ms  commit-p99-ms  commits/s  appends/commit")
var drainPaths: [(String, Int)] = []
for batchEvents in [1, 1000] {
    for appenders in [1, 8, 64] {
        if let only = options.only, only != "\(appenders)x\(batchEvents)" { continue }
        let (r, path) = try await runAppends(appenders: appenders, batchEvents: batchEvents, seconds: options.seconds)
        let rate = Double(r.appends) / r.elapsed
        print("\(String(appenders).padding(toLength: 11, withPad: " ", startingAt: 0))"
            + "\(String(batchEvents).padding(toLength: 7, withPad: " ", startingAt: 0))"
            + "\(f(rate).padding(toLength: 12, withPad: " ", startingAt: 0))"
            + "\(f(Double(r.events) / r.elapsed).padding(toLength: 10, withPad: " ", startingAt: 0))"
            + "\(f(rate / baseline, 1).padding(toLength: 13, withPad: " ", startingAt: 0))"
            + "\(f(r.p50 * 1000, 2).padding(toLength: 15, withPad: " ", startingAt: 0))"
            + "\(f(r.p99 * 1000, 2).padding(toLength: 15, withPad: " ", startingAt: 0))"
            + "\(f(Double(r.commits) / r.elapsed).padding(toLength: 11, withPad: " ", startingAt: 0))"
            + "\(f(Double(r.appends) / Double(max(r.commits, 1)), 1))")
        if appenders == 64 || (appenders == 8 && batchEvents == 1000) { drainPaths.append((path, batchEvents)) }
        else { try? FileManager.default.removeItem(atPath: path) }
    }
}
print("")
for (path, batchEvents) in drainPaths {
    let d = try await drain(path: path)
    print("drain (lease 1024 + ack), \(batchEvents)-event records: \(d.records) records, \(d.events) events in \(f(d.elapsed, 2)) s = \(f(Double(d.events) / d.elapsed)) events/s, \(f(Double(d.records) / d.elapsed)) records/s")
    try? FileManager.default.removeItem(atPath: path)
}
if options.openBacklogGiB > 0 {
    let o = try await openWithBacklog(gib: options.openBacklogGiB)
    print("")
    print("open with a backlog of \(f(Double(o.bytes) / Double(1 << 30), 2)) GiB (\(o.records) records, written in \(f(o.fill, 1)) s): open median \(f(o.opens[2] * 1000, 2)) ms, max \(f(o.opens.last! * 1000, 2)) ms")
}
let memory = rss()
print("")
print("RSS now \(memory.current) MiB, peak \(memory.peak) MiB")
