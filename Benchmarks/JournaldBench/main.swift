// Journald benchmark: a journal of N entries (default 1M) written by systemd-journal-remote from export
// format, with the fields a real journald entry has (~25, trusted ones included), then read
//   baseline: `journalctl -o json --file <the files> > /dev/null`;
//   reader:   Ferry's JournalReader turning the same entries into events (no queue);
//   input:    the JournaldInput service (journal thread, read-ahead) into a sink that drops the events.
// Each is run 3 times after a warm-up (page cache), alternating; the median is reported with its ratio to
// the baseline's median. The issue's target, with the queue (phase 2), is >= 0.5 of journalctl.
//
// With --idle S, it measures instead how often the input's journal thread wakes up while it follows a journal
// that nobody writes to, for S seconds (the issue's target: none beyond the journal's own).
//
//   tools/bench/journald [--entries N] [--dir DIR] [--keep] [--idle S]
import FerryJournald
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import ServiceLifecycle

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
var entries = 1_000_000
var base = NSTemporaryDirectory()
var keep = false
var idle: Int?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--entries": entries = Int(arguments.next() ?? "") ?? entries
    case "--dir": base = arguments.next() ?? base
    case "--keep": keep = true
    case "--idle": idle = Int(arguments.next() ?? "") ?? 10
    default:
        FileHandle.standardError.write(Data("usage: ferry-bench-journald [--entries N] [--dir DIR] [--keep] [--idle SECONDS]\n".utf8))
        exit(2)
    }
}

/// Writes a line at once (no stdio buffering), so a long run shows each row as it is measured.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// The export format of `count` entries that look like a busy host's: a few services, kernel and sshd lines,
/// all trusted fields journald adds, messages of varied length.
func writeExport(count: Int, to handle: FileHandle) {
    let units = [("nginx.service", "nginx", "/usr/sbin/nginx"), ("ssh.service", "sshd", "/usr/sbin/sshd"),
                 ("cron.service", "CRON", "/usr/sbin/cron"), ("app.service", "app", "/opt/app/bin/app"),
                 ("systemd-networkd.service", "systemd-networkd", "/lib/systemd/systemd-networkd")]
    let messages = ["Accepted publickey for deploy from 10.0.4.17 port 52214 ssh2: ED25519 SHA256:Qm9vYmFyYmF6cXV4",
                    "GET /api/v1/orders?page=3 200 1432 \"-\" \"curl/7.88.1\" rt=0.012",
                    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
                    "eth0: Link UP", "order 81723 shipped to warehouse 4 after 3 retries; queue depth 17",
                    "Started Session 4711 of User deploy."]
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 {  // xorshift64*: fast and deterministic
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    var chunk: [UInt8] = []
    chunk.reserveCapacity(1 << 20)
    let boot = "5f1c2a9e0d8b4e7aa3c6b1f0e9d8c7b6"
    for i in 0..<count {
        let (unit, comm, exe) = units[Int(next() % UInt64(units.count))]
        let message = messages[Int(next() % UInt64(messages.count))]
        let realtime = 1_700_000_000_000_000 + UInt64(i) * 997
        let pid = 300 + next() % 30000
        let text = """
            __REALTIME_TIMESTAMP=\(realtime)
            __MONOTONIC_TIMESTAMP=\(5_000_000 + UInt64(i) * 997)
            _BOOT_ID=\(boot)
            _MACHINE_ID=a1b2c3d4e5f60718293a4b5c6d7e8f90
            _HOSTNAME=edge-gw-lisbon-07
            _TRANSPORT=stdout
            PRIORITY=\(next() % 8)
            SYSLOG_FACILITY=3
            SYSLOG_IDENTIFIER=\(comm)
            _PID=\(pid)
            _UID=0
            _GID=0
            _COMM=\(comm)
            _EXE=\(exe)
            _CMDLINE=\(exe) -c /etc/\(comm)/\(comm).conf
            _CAP_EFFECTIVE=1ffffffffff
            _SELINUX_CONTEXT=unconfined
            _SYSTEMD_CGROUP=/system.slice/\(unit)
            _SYSTEMD_UNIT=\(unit)
            _SYSTEMD_SLICE=system.slice
            _SYSTEMD_INVOCATION_ID=\(String(next(), radix: 16))\(String(next() % 0xFFFF, radix: 16))
            _STREAM_ID=\(String(next(), radix: 16))
            MESSAGE=\(message) seq=\(i)


            """
        chunk += Array(text.utf8)
        if chunk.count >= 1 << 20 {
            handle.write(Data(chunk))
            chunk.removeAll(keepingCapacity: true)
        }
    }
    handle.write(Data(chunk))
}

/// Runs `executable` with stdout and stderr to /dev/null; returns its wall time and its CPU time (from
/// `wait4`, so the child is spawned and reaped here, not by Foundation's `Process`).
func timeChild(_ executable: String, _ arguments: [String]) throws -> (seconds: Double, cpu: Double) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let start = ContinuousClock.now
    let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    precondition(rc == 0, "cannot start \(executable): \(String(cString: strerror(rc)))")
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let elapsed = seconds(ContinuousClock.now - start)
    precondition(status == 0, "\(executable) failed with status \(status)")
    let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    return (elapsed, cpu)
}

/// Reads every entry with the reader on this thread; returns (entries, event bytes).
func readAll(files: [String]) throws -> (count: Int, bytes: Int) {
    let reader = try JournalReader(configuration: JournaldInputConfiguration(source: .files(files), startAt: .beginning))
    _ = try reader.start(storedCursor: nil, startAt: .beginning)
    var count = 0, bytes = 0
    while true {
        let batch = try reader.read(maxEntries: 4096, maxBytes: 4 << 20)
        if batch.events.isEmpty { break }
        count += batch.events.count
        bytes += batch.events.bytes.count
    }
    return (count, bytes)
}

/// A sink that drops the events and counts them.
final class CountingSink: JournaldSink {
    let stored = Counter()
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add(_ n: Int) { lock.lock(); value += n; lock.unlock() }
        var current: Int { lock.lock(); defer { lock.unlock() }; return value }
    }
    func appendWaiting(_ events: JournalEvents, position: JournalPosition) async -> Bool {
        stored.add(events.count)
        return true
    }
}

func runInput(files: [String], count: Int) async throws {
    let sink = CountingSink()
    let input = try JournaldInput(name: "bench", configuration: JournaldInputConfiguration(source: .files(files), startAt: .beginning),
                                  storedPosition: nil, sink: sink, logger: quiet)
    try await withServices([input]) {
        guard try await eventually(timeout: .seconds(600), every: .milliseconds(2), { sink.stored.current >= count }) else {
            throw CancellationError()
        }
    }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func bench(entries: Int, base: String, keep: Bool) async throws {
    let dir = base + "/ferry-bench-journald-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }

    let writeStart = ContinuousClock.now
    let remote = Process()
    remote.executableURL = URL(fileURLWithPath: "/lib/systemd/systemd-journal-remote")
    remote.arguments = ["--output=\(dir)/bench.journal", "-"]
    let pipe = Pipe()
    remote.standardInput = pipe
    remote.standardError = FileHandle.nullDevice
    try remote.run()
    writeExport(count: entries, to: pipe.fileHandleForWriting)
    try pipe.fileHandleForWriting.close()
    remote.waitUntilExit()
    precondition(remote.terminationStatus == 0, "systemd-journal-remote failed")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".journal") }.sorted().map { dir + "/" + $0 }
    let size = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
    say("journald benchmark: \(entries) entries (~24 fields each) in \(files.count) journal file(s), \(size >> 20) MiB, written in \(String(format: "%.1f", seconds(ContinuousClock.now - writeStart))) s")

    let fileArguments = files.map { "--file=\($0)" }
    _ = try timeChild("/bin/journalctl", ["-o", "json", "--no-pager"] + fileArguments)  // warm-up: page cache
    let (warmCount, warmBytes) = try readAll(files: files)
    precondition(warmCount == entries, "the reader read \(warmCount) entries of \(entries)")
    say("events: \(warmBytes / warmCount) bytes on average")

    var baseline: [Double] = [], reader: [Double] = [], input: [Double] = []
    var cpuBaseline: [Double] = [], cpuReader: [Double] = [], cpuInput: [Double] = []
    for _ in 0..<3 {
        let b = try timeChild("/bin/journalctl", ["-o", "json", "--no-pager"] + fileArguments)
        baseline.append(b.seconds)
        cpuBaseline.append(b.cpu)
        var cpu = cpuSeconds()
        var start = ContinuousClock.now
        _ = try readAll(files: files)
        reader.append(seconds(ContinuousClock.now - start))
        cpuReader.append(cpuSeconds() - cpu)
        cpu = cpuSeconds()
        start = ContinuousClock.now
        try await runInput(files: files, count: entries)
        input.append(seconds(ContinuousClock.now - start))
        cpuInput.append(cpuSeconds() - cpu)
    }
    let baseRate = Double(entries) / median(baseline)
    func row(_ name: String, _ times: [Double], _ cpu: [Double]) {
        let rate = Double(entries) / median(times)
        say(name.padding(toLength: 50, withPad: " ", startingAt: 0)
            + String(format: " %10.0f entries/s   %6.2f s   cpu %6.2f s   ratio %.2f", rate, median(times), median(cpu), rate / baseRate))
    }
    row("baseline: journalctl -o json --file > /dev/null", baseline, cpuBaseline)
    row("Ferry JournalReader -> events", reader, cpuReader)
    row("Ferry JournaldInput -> dropping sink", input, cpuInput)
    if keep { say("journal kept in \(dir)") }
}

/// Voluntary context switches (wake-ups after a block) of this process's threads named `TP-#…`: the
/// input's own one-thread pool (the benchmark starts no other NIOThreadPool).
func poolThreadWakeUps() -> (threads: Int, wakeUps: Int) {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.reduce((0, 0)) { total, task in
        guard let name = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8), name.hasPrefix("TP-#"),
              let status = try? String(contentsOfFile: "/proc/self/task/\(task)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("voluntary_ctxt_switches:") }),
              let count = Int(line.split(separator: "\t").last ?? "") else { return total }
        return (total.0 + 1, total.1 + count)
    }
}

func benchIdle(seconds: Int, base: String) async throws {
    let dir = base + "/ferry-bench-journald-idle-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let remote = Process()
    remote.executableURL = URL(fileURLWithPath: "/lib/systemd/systemd-journal-remote")
    remote.arguments = ["--output=\(dir)/idle.journal", "-"]
    let pipe = Pipe()
    remote.standardInput = pipe
    remote.standardError = FileHandle.nullDevice
    try remote.run()
    writeExport(count: 1000, to: pipe.fileHandleForWriting)
    try pipe.fileHandleForWriting.close()
    remote.waitUntilExit()

    let sink = CountingSink()
    let input = try JournaldInput(name: "idle", configuration: JournaldInputConfiguration(source: .directory(dir), startAt: .beginning),
                                  storedPosition: nil, sink: sink, logger: quiet)
    try await withServices([input]) {
        guard try await eventually(timeout: .seconds(60), { sink.stored.current >= 1000 }) else { throw CancellationError() }
        try await Task.sleep(for: .milliseconds(200))  // settle: the last read finds nothing and the thread blocks
        let before = poolThreadWakeUps()
        try await Task.sleep(for: .seconds(seconds))  // the measured idle window
        let after = poolThreadWakeUps()
        precondition(before.threads == 1 && after.threads == 1, "expected one journal thread, found \(after.threads)")
        say("journald idle: \(after.wakeUps - before.wakeUps) wake-ups of the journal thread in \(seconds) s of a quiet journal (\(before.wakeUps) while reading the first 1000 entries)")
    }
}

if let idle {
    try await benchIdle(seconds: idle, base: base)
} else {
    try await bench(entries: entries, base: base, keep: keep)
}
