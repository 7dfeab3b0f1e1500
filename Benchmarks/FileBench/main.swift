// File input benchmark:
//   --matchers   the multiline start pattern on 1M log lines: glibc POSIX regexec on the bytes in place
//                (what Ferry uses) against Swift Regex (with and without making the String), two patterns;
//   --pipeline   a pre-written log of ~140-byte lines read by the file input into a real queue (fsynced
//                appends), against `gzip -1` on the same events as Ferry stored them (the target: ≥ 0.5);
//   --idle       1,000 followed files, quiet: the input's CPU over 30 s (three rescans) and the RSS.
// Without a flag all run. Ratios are to baselines measured in the same run.
//
//   tools/bench/file [--matchers] [--pipeline] [--idle] [--lines N] [--bytes N] [--files N] [--dir DIR]
import FerryFile
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import Synchronization

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
var runMatchers = false
var runPipeline = false
var runIdle = false
var idleFiles = 1000
var matcherLines = 1_000_000
var logBytes = 1 << 30
var base = NSTemporaryDirectory()
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--matchers": runMatchers = true
    case "--pipeline": runPipeline = true
    case "--idle": runIdle = true
    case "--files": idleFiles = Int(arguments.next() ?? "") ?? idleFiles
    case "--lines": matcherLines = Int(arguments.next() ?? "") ?? matcherLines
    case "--bytes": logBytes = Int(arguments.next() ?? "") ?? logBytes
    case "--dir": base = arguments.next() ?? base
    default:
        FileHandle.standardError.write(Data("usage: ferry-bench-file [--matchers] [--pipeline] [--lines N] [--bytes N] [--dir DIR]\n".utf8))
        exit(2)
    }
}
if !runMatchers && !runPipeline && !runIdle { runMatchers = true; runPipeline = true; runIdle = true }

/// Writes a line at once (no stdio buffering), so a long run shows each row as it is measured.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let start = ContinuousClock.now
    let value = try body()
    return (value, seconds(ContinuousClock.now - start))
}

/// Log lines like a Java service's (~140 bytes): 4 in 5 start with a timestamp, the others are stack-trace lines.
struct LogLines: IteratorProtocol {
    var state: UInt64 = 0x2545F4914F6CDD1D
    mutating func random() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
    let levels = ["INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"]
    let classes = ["c.e.shop.OrderService", "c.e.shop.PaymentClient", "c.e.shop.StockCache", "o.a.kafka.Producer"]
    func two(_ n: UInt64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    mutating func next() -> String? {
        if random() % 5 == 0 {
            return "\tat com.example.shop.payment.PaymentService.charge(PaymentService.java:\(random() % 400)) ~[shop-payment-4.2.1.jar:4.2.1]"
        }
        let ms = random() % 86_400_000
        let millis = ms % 1000
        let time = "2026-12-02 \(two(ms / 3_600_000)):\(two(ms / 60_000 % 60)):\(two(ms / 1000 % 60)).\(millis < 100 ? "0" : "")\(two(millis))"
        return "\(time) \(levels[Int(random() % 6)]) [worker-\(random() % 32)] \(classes[Int(random() % 4)]) - order \(random() % 100_000) placed by user \(random() % 10_000) in \(random() % 500) ms trace=\(String(random(), radix: 16))"
    }
}

// MARK: Matchers

func benchMatchers(lines count: Int) throws {
    var generator = LogLines()
    let lines = (0..<count).map { _ in Array(generator.next()!.utf8) }
    let strings = lines.map { String(decoding: $0, as: UTF8.self) }
    let bytes = lines.reduce(0) { $0 + $1.count }
    say("multiline start pattern, \(count) lines (\(bytes / count) bytes on average), one match test per line")
    for (posix, swift) in [(#"^[0-9]{4}-[0-9]{2}-[0-9]{2} "#, #"^\d{4}-\d{2}-\d{2} "#), ("Exception|ERROR", "Exception|ERROR")] {
        let pattern = try StartPattern(posix)
        let (posixMatches, posixTime) = timed { lines.reduce(0) { n, line in n + (line.withUnsafeBytes { pattern.matches($0) } ? 1 : 0) } }
        let regex = try Regex(swift)
        let (swiftMatches, swiftTime) = try timed {
            try lines.reduce(0) { n, line in n + (try regex.firstMatch(in: String(decoding: line, as: UTF8.self)) != nil ? 1 : 0) }
        }
        let (readyMatches, readyTime) = try timed { try strings.reduce(0) { n, line in n + (try regex.firstMatch(in: line) != nil ? 1 : 0) } }
        precondition(posixMatches == swiftMatches && swiftMatches == readyMatches, "the matchers disagree")
        say("  \(posix)")
        for (name, time) in [("POSIX regexec on the bytes (Ferry)", posixTime), ("Swift Regex, String made per line", swiftTime),
                             ("Swift Regex, Strings made beforehand", readyTime)] {
            say("    " + name.padding(toLength: 40, withPad: " ", startingAt: 0)
                + String(format: "%10.0f lines/s  %7.3f s  %6.2f x POSIX", Double(count) / time, time, time / posixTime))
        }
        say("    matches: \(posixMatches)")
    }
}

// MARK: Pipeline

/// The agent's sink: the seam stamps each event (`@timestamp`, `host`) and appends it with the file's position
/// in one fsynced transaction. Counts the events stored.
final class QueueSink: FileEventSink {
    let sink: IntakeSink
    let events = Atomic<Int>(0)
    init(queue: Queue) {
        sink = IntakeSink(intake: Intake(input: "file", queue: queue, stamp: StampSettings().stamp(host: currentHostname()), logger: quiet))
    }

    func appendWaiting(_ batch: FileEvents, positions: [FilePositionUpdate]) async -> Bool {
        guard await sink.appendWaiting(batch, positions: positions) else { return false }
        events.add(batch.count, ordering: .relaxed)
        return true
    }
}

func run(_ command: String) -> Double {
    let start = ContinuousClock.now
    let child = try! ChildProcess(executable: "/bin/sh", arguments: ["-c", command])
    precondition(child.waitForExit() == 0, "\(command) failed")
    return seconds(ContinuousClock.now - start)
}

func benchPipeline(bytes: Int, base: String) async throws {
    let dir = base + "/ferry-bench-file-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let log = dir + "/app.log"
    // The log, written before the input starts.
    var generator = LogLines()
    var written = 0
    var lines = 0
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    let handle = FileHandle(forWritingAtPath: log)!
    var chunk = ""
    while written < bytes {
        let line = generator.next()! + "\n"
        chunk += line
        written += line.utf8.count
        lines += 1
        if chunk.utf8.count > 1 << 20 { handle.write(Data(chunk.utf8)); chunk = "" }
    }
    handle.write(Data(chunk.utf8))
    try handle.close()
    say("pipeline: \(lines) lines, \(written / (1 << 20)) MiB, \(written / lines) bytes per line on average (written; reading starts)")

    let queue = try Queue.open(at: dir + "/queue", configuration: QueueConfiguration(maxBytes: 8 << 30), logger: quiet)
    defer { queue.close() }
    let sink = QueueSink(queue: queue)
    var configuration = FileInputConfiguration(paths: [log])
    configuration.rescanInterval = .seconds(3600)
    let input = try FileInput(name: "bench", configuration: configuration, storedPositions: [], sink: sink, logger: quiet)
    let cpu = cpuSeconds()
    let start = ContinuousClock.now
    try await withServices([input]) {
        guard try await eventually(timeout: .seconds(3600), every: .milliseconds(5), { sink.events.load(ordering: .relaxed) >= lines }) else {
            throw CancellationError()
        }
    }
    let ferryTime = seconds(ContinuousClock.now - start)
    let ferryCPU = cpuSeconds() - cpu

    // The same events as stored, for the baseline.
    let events = dir + "/events.ndjson"
    _ = FileManager.default.createFile(atPath: events, contents: nil)
    let out = FileHandle(forWritingAtPath: events)!
    var sequence: UInt64 = 0
    var storedBytes = 0
    while true {
        let page = try queue.peek(from: sequence, maxRecords: 256)
        if page.records.isEmpty { break }
        for stored in page.records {
            var text = Data()
            for event in try stored.record.events() {
                text.append(contentsOf: event.readableBytesView)
                text.append(0x0A)
            }
            storedBytes += text.count
            out.write(text)
        }
        sequence = page.nextSequence
    }
    try out.close()
    _ = run("cat \(events) > /dev/null")  // warm the page cache for gzip as the log was for Ferry
    let gzipTime = run("gzip -1 -c \(events) > /dev/null")
    let ferryRate = Double(storedBytes) / ferryTime
    let gzipRate = Double(storedBytes) / gzipTime
    say(String(format: "  ferry file input -> queue  %10.0f lines/s  %7.1f MiB/s of events  %7.2f s  cpu %6.2f s",
               Double(lines) / ferryTime, ferryRate / 1_048_576, ferryTime, ferryCPU))
    say(String(format: "  gzip -1 on the same events %10.0f lines/s  %7.1f MiB/s of events  %7.2f s",
               Double(lines) / gzipTime, gzipRate / 1_048_576, gzipTime))
    say(String(format: "  ratio ferry / gzip -1: %.2f (target >= 0.5)", ferryRate / gzipRate))
}

// MARK: Idle

/// Resident and peak resident memory of this process, MiB.
func rss() -> (current: Int, peak: Int) {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first { Int($0) != nil } ?? "0") ?? 0
    }
    return (field("VmRSS:") / 1024, field("VmHWM:") / 1024)
}

/// Counts events, keeps nothing.
final class CountingSink: FileEventSink {
    let events = Atomic<Int>(0)
    func appendWaiting(_ batch: FileEvents, positions: [FilePositionUpdate]) async -> Bool {
        events.add(batch.count, ordering: .relaxed)
        return true
    }
}

func benchIdle(files: Int, base: String) async throws {
    let dir = base + "/ferry-bench-file-idle-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for n in 0..<files { _ = FileManager.default.createFile(atPath: dir + "/f\(n).log", contents: Data("file \(n) line 0\n".utf8)) }
    let before = rss().current
    let sink = CountingSink()
    let input = try FileInput(name: "idle", configuration: FileInputConfiguration(paths: [dir + "/*.log"]), storedPositions: [], sink: sink, logger: quiet)
    try await withServices([input]) {
        let start = ContinuousClock.now
        guard try await eventually(timeout: .seconds(600), every: .milliseconds(5), { sink.events.load(ordering: .relaxed) >= files }) else {
            throw CancellationError()
        }
        let ready = seconds(ContinuousClock.now - start)
        let cpu = cpuSeconds()
        try await Task.sleep(for: .seconds(30))  // the idle period being measured
        let idle = cpuSeconds() - cpu
        let memory = rss()
        say("idle: \(files) followed files (one line each, read in \(String(format: "%.2f", ready)) s), then 30 s quiet with the default 10 s rescan")
        say(String(format: "  cpu %.3f s over 30 s (%.2f %% of one core); RSS %d MiB (%d MiB before the input), peak %d MiB",
                   idle, idle / 30 * 100, memory.current, before, memory.peak))
    }
}

if runMatchers { try benchMatchers(lines: matcherLines) }
if runIdle { try await benchIdle(files: idleFiles, base: base) }
if runPipeline { try await benchPipeline(bytes: logBytes, base: base) }
