import ArgumentParser
import FerryQueue
import FerryWire
import FoundationEssentials
import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

@main
struct FerryTools: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-tools",
        abstract: "Inspect, export, verify, repair and manage a Ferry queue.",
        discussion: """
        Read commands (stats, peek, tail, export, verify, dlq list/show) work while the agent runs: they use LMDB \
        read transactions and never block it. Commands that change the queue (import, repair, compact, purge, \
        dlq requeue/purge) need the agent stopped and say so if it is not.
        """,
        subcommands: [Stats.self, Peek.self, Tail.self, Export.self, Import.self, Verify.self, Repair.self,
                      Compact.self, Purge.self, DLQ.self, Files.self, JournalCommand.self]
    )
}

/// `--data-dir`, shared by every command.
struct QueueOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The queue directory (the agent's queue.path).")
    var dataDir: String = "./ferry-data"

    static let quiet = Logger(label: "ferry-tools") { _ in SwiftLogNoOpLogHandler() }

    func openReadOnly() throws -> Queue {
        do {
            return try Queue.open(at: dataDir, mode: .readOnly, logger: Self.quiet)
        } catch {
            throw fail(error.message)
        }
    }

    func openExclusive() throws -> Queue {
        do {
            return try Queue.open(at: dataDir, mode: .exclusive, logger: Self.quiet)
        } catch where error.code == .locked {
            throw fail("\(error.message). This command changes the queue, so the agent must be stopped first.")
        } catch {
            throw fail(error.message)
        }
    }
}

/// Prints `message` on stderr and ends with status 1.
func fail(_ message: String) -> ExitCode {
    writeStandardError("ferry-tools: \(message)\n")
    return ExitCode(1)
}

func stderr(_ text: String) { writeStandardError(text) }

/// A progress line on stderr when it is a terminal, nothing otherwise.
struct Progress {
    let total: Int
    let label: String
    let enabled = isatty(2) == 1
    let start = Date()

    func update(_ done: Int) {
        guard enabled, total > 0 else { return }
        let fraction = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = Double(done) / max(Date().timeIntervalSince(start), 0.001) / 1_048_576
        stderr("\r\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(Int(fraction * 100))% \(fixed(rate, digits: 0)) MB/s")
    }

    func finish() { if enabled { stderr("\n") } }
}

func humanBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : "\(fixed(value, digits: 1)) \(units[unit])"
}

/// `value` rounded to `digits` decimals (`%.1f` without Foundation's `String(format:)`).
func fixed(_ value: Double, digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded(.toNearestOrEven)  // printf's rounding of an exact tie
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    let sign = value < 0 && scaled > 0 ? "-" : ""
    guard digits > 0 else { return sign + "\(whole)" }
    let text = String(fraction)
    return sign + "\(whole)." + String(repeating: "0", count: max(0, digits - text.count)) + text
}

/// Sleeps `seconds` (any length; `--watch` intervals).
func pause(seconds: Double) {
    var time = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
    var left = timespec()
    while nanosleep(&time, &left) != 0 && errno == EINTR { time = left }
}

/// `text` padded with spaces to `width` characters (never cut).
func padded(_ text: String, _ width: Int) -> String {
    text + String(repeating: " ", count: max(0, width - text.count))
}

func humanAge(_ milliseconds: Int64) -> String {
    let seconds = milliseconds / 1000
    if seconds < 120 { return "\(seconds)s" }
    if seconds < 7200 { return "\(seconds / 60)m" }
    if seconds < 172_800 { return "\(seconds / 3600)h" }
    return "\(seconds / 86400)d"
}

func isoTime(_ milliseconds: Int64) -> String {
    Timestamp.rfc3339(milliseconds: milliseconds)
}

// MARK: stats

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Records, events, bytes, ages, counters and space of a queue.")
    @OptionGroup var queue: QueueOptions
    @Flag(help: "One JSON object with stable field names.") var json = false

    func run() throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        let s = q.stats
        if json {
            print(s.json(agentID: q.agentID, path: q.path))
            return
        }
        var info = statvfs()
        let free = statvfs(q.path, &info) == 0 ? UInt64(info.f_bavail) * UInt64(info.f_frsize) : 0
        let now = RecordTime.now()
        let rows: [(String, String)] = [
            ("queue", q.path),
            ("agent id", q.agentID),
            ("format version", "\(Queue.formatVersion)"),
            ("records", "\(s.records)" + (s.firstSequence.map { " (sequence \($0)…\(s.lastSequence ?? $0))" } ?? "")),
            ("events", "\(s.events)"),
            ("stored bytes", humanBytes(s.bytes)),
            ("oldest record", s.oldestCreatedAt.map { "\(isoTime($0)) (\(humanAge(max(0, now - $0))) old)" } ?? "-"),
            ("dead records", "\(s.deadRecords) (\(s.deadEvents) events, \(humanBytes(s.deadBytes)))"),
            ("appended", "\(s.appendedEvents) events in \(s.appendedRecords) records"),
            ("delivered", "\(s.deliveredEvents) events"),
            // Only `when_full: drop_oldest` drops; the policy lives in the agent's configuration, not in the queue.
            ("dropped", "\(s.droppedEvents) events deleted unsent (by when_full: drop_oldest to make room, or by queue.max_age)"),
            ("moved to dead", "\(s.deadEventsTotal) events"),
            ("duplicates refused", "\(s.duplicateBatches) batches"),
            ("fill", "\(fixed(s.fillRatio * 100, digits: 1))% of max_bytes \(humanBytes(UInt64(s.maxBytes)))"),
            ("LMDB map", "\(humanBytes(UInt64(s.mapUsedBytes))) used of \(humanBytes(UInt64(s.mapSize)))"),
            ("disk free", humanBytes(free)),
        ]
        for (key, value) in rows { print(padded(key, 20) + value) }
        for output in s.outputs {
            print("output \(output.name) (when_lagging: \(output.whenLagging.rawValue))")
            let outputRows: [(String, String)] = [
                ("pending", "\(output.pendingEvents) events, \(humanBytes(output.pendingBytes))"),
                ("oldest pending", output.oldestPendingCreatedAt.map { "\(isoTime($0)) (\(humanAge(now - $0)) behind)" } ?? "-"),
                ("delivered", "\(output.deliveredEvents) events in \(output.deliveredRecords) records"),
                ("dead records", "\(output.deadRecords) now, \(output.deadRecordsTotal) in all"),
                ("dropped", "\(output.droppedLaggingEvents) events lagging (when_lagging: drop), \(output.droppedFullEvents) when full"),
            ]
            for (key, value) in outputRows { print("  " + padded(key, 18) + value) }
        }
    }
}

// MARK: peek, tail

func printEvents(_ records: [StoredRecord], json: Bool) {
    for stored in records {
        guard let lines = try? stored.record.events() else {
            print("\(stored.sequence)\t<record cannot be decoded; run ferry-tools verify>")
            continue
        }
        for line in lines {
            if json {
                print(#"{"sequence":\#(stored.sequence),"event":\#(String(buffer: line))}"#)
            } else {
                print("\(stored.sequence)\t\(String(buffer: line))")
            }
        }
    }
}

struct Peek: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print waiting events with their record's sequence number.")
    @OptionGroup var queue: QueueOptions
    @Option(help: "First sequence number.") var from: UInt64 = 0
    @Option(name: .short, help: "Records to print.") var n: Int = 10
    @Flag(help: "One JSON object per event: {\"sequence\":…, \"event\":{…}}.") var json = false

    func run() throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        let page = try q.peek(from: from, maxRecords: n)
        printEvents(page.records, json: json)
        for bad in page.corrupt { stderr("record \(bad.sequence) is damaged: \(bad.error.message)\n") }
    }
}

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the newest events; with -f, follow new ones as the agent stores them.")
    @OptionGroup var queue: QueueOptions
    @Option(name: .short, help: "Records to print first.") var n: Int = 10
    @Flag(name: .short, help: "Follow: keep printing records as they are appended (Ctrl-C to stop).") var follow = false
    @Option(help: "With -f, stop after this many seconds (0: never).") var seconds: Int = 0
    @Flag(help: "JSON lines.") var json = false

    func run() async throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        let stats = q.stats
        var next = stats.lastSequence.map { $0 >= UInt64(n) ? $0 - UInt64(n) + 1 : 0 } ?? stats.nextSequence
        let deadline = seconds > 0 ? Date().addingTimeInterval(Double(seconds)) : .distantFuture
        repeat {
            let page = try q.peek(from: next, maxRecords: 1000)
            printEvents(page.records, json: json)
            fflush(nil)
            if page.records.isEmpty && page.corrupt.isEmpty {
                guard follow else { break }
                // Another process appends: poll LMDB (each read sees its latest commit), 5 times a second.
                try await Task.sleep(for: .milliseconds(200))
            } else {
                next = page.nextSequence
            }
        } while Date() < deadline
    }
}

// MARK: export, import

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write events as NDJSON (optionally gzip), with progress on a terminal and a summary.")
    @OptionGroup var queue: QueueOptions
    @Option(help: "First sequence number, or an ISO 8601 time (records created at or after it).") var from: String?
    @Option(help: "Last sequence number, or an ISO 8601 time (records created at or before it).") var to: String?
    @Flag(help: "Export the dead records instead of the waiting ones.") var dead = false
    @Option(name: .short, help: "Output file (default: standard output).") var output: String?
    @Flag(help: "gzip the output.") var gzip = false

    enum Bound { case sequence(UInt64), time(Int64) }

    /// A sequence number, or an RFC 3339 time (`2026-11-23T10:00:00Z`, `.123`, `+01:00`) as milliseconds,
    /// rounded inwards: up for a lower bound, down for an upper one, so a bound never takes in a record
    /// created outside it.
    static func bound(_ text: String?, lower: Bool) throws -> Bound? {
        guard let text else { return nil }
        if let sequence = UInt64(text) { return .sequence(sequence) }
        guard text.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/) != nil,
              let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: text.contains(".")))
        else {
            throw ValidationError("\(text) is neither a sequence number nor an ISO 8601 time such as 2026-11-23T10:00:00Z")
        }
        let milliseconds = date.timeIntervalSince1970 * 1000
        return .time(Int64(lower ? milliseconds.rounded(.up) : milliseconds.rounded(.down)))
    }

    func run() throws {
        let lower = try Self.bound(from, lower: true), upper = try Self.bound(to, lower: false)
        let q = try queue.openReadOnly()
        defer { q.close() }
        let fd: Int32 = output.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? 1
        guard fd >= 0 else { throw fail("cannot write \(output ?? "-"): \(String(cString: strerror(errno)))") }
        defer { if fd != 1 { close(fd) } }
        let stats = q.stats
        let progress = Progress(total: Int(dead ? stats.deadBytes : stats.bytes), label: "export")
        var records = 0, events = 0, bytesIn = 0, bytesOut = 0, skipped = 0
        func include(_ sequence: UInt64, _ createdAt: Int64) -> Bool {
            switch lower { case .sequence(let s)?: if sequence < s { return false }; case .time(let t)?: if createdAt < t { return false }; case nil: break }
            switch upper { case .sequence(let s)?: if sequence > s { return false }; case .time(let t)?: if createdAt > t { return false }; case nil: break }
            return true
        }
        func emit(_ record: QueueRecord) throws {
            let ndjson = try record.decompressedPayload()
            var out = ByteBuffer()
            if gzip { ndjson.withUnsafeReadableBytes { Gzip.compress($0, level: 6, into: &out) } } else { out = ndjson }
            let failed = out.withUnsafeReadableBytes { writeAll(fd, $0) }
            guard failed == 0 else { throw fail("write failed: \(String(cString: strerror(failed)))") }
            records += 1
            events += Int(record.eventCount)
            bytesIn += record.storedSize
            bytesOut += out.readableBytes
        }
        var start: UInt64 = 0
        if case .sequence(let s)? = lower { start = s }
        if dead {
            while true {
                let page = try q.deadRecords(from: start, maxRecords: 256)
                guard let last = page.last else { break }
                start = last.sequence + 1
                for d in page {
                    guard case .success(let record) = d.record else { skipped += 1; continue }
                    if include(d.sequence, record.createdAt) { try emit(record) }
                }
                progress.update(bytesIn)
            }
        } else {
            while true {
                let page = try q.peek(from: start, maxRecords: 256)
                if page.records.isEmpty && page.corrupt.isEmpty { break }
                start = page.nextSequence
                skipped += page.corrupt.count
                for stored in page.records where include(stored.sequence, stored.record.createdAt) {
                    do { try emit(stored.record) } catch let error as WireError {
                        skipped += 1
                        stderr("record \(stored.sequence) skipped: \(error.message)\n")
                    }
                }
                if case .sequence(let s)? = upper, start > s { break }
                progress.update(bytesIn)
            }
        }
        progress.finish()
        stderr("exported \(events) events from \(records) records (\(humanBytes(UInt64(bytesOut))) written)\(skipped > 0 ? "; \(skipped) damaged records skipped, run ferry-tools verify" : "")\n")
        if skipped > 0 { throw ExitCode(1) }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Append the events of an NDJSON file (plain or gzip) to the queue. The agent must be stopped.")
    @OptionGroup var queue: QueueOptions
    @Argument(help: "NDJSON file, one JSON object per line; gzip is detected.") var file: String
    @Option(help: "Events per append (one transaction each).") var batch: Int = 10_000

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw fail("cannot read \(file)") }
        var body = ByteBuffer(bytes: data)
        if data.starts(with: [0x1F, 0x8B]) {
            do {
                body = try data.withUnsafeBytes { try Gzip.decompress($0, maxOutputBytes: Int.max / 2) }
            } catch {
                throw fail("\(file) is not valid gzip: \(error)")
            }
        }
        // Validate everything before appending anything: a bad file harms nothing.
        let lines = NDJSON.lines(of: body)
        for (index, line) in lines.enumerated() {
            do {
                try line.withUnsafeReadableBytes { try JSONValidator.validateObject($0) }
            } catch {
                throw fail("\(file) line \(index + 1): \(error); nothing was imported")
            }
        }
        let q = try queue.openExclusive()
        defer { q.close() }
        let progress = Progress(total: lines.count, label: "import")
        var imported = 0
        for start in stride(from: 0, to: lines.count, by: max(batch, 1)) {
            var builder = RecordBuilder()
            for line in lines[start..<min(start + batch, lines.count)] { builder.append(line: line) }
            do {
                _ = try await q.append(builder.finish())
            } catch {
                throw fail("\(error.message); \(imported) events were imported before this")
            }
            imported = min(start + batch, lines.count)
            progress.update(imported)
        }
        progress.finish()
        stderr("imported \(imported) events from \(file)\n")
    }
}

// MARK: verify, repair, compact, purge

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check every record (CRC, gzip, NDJSON); print each bad one with why. Exit status 1 if any.")
    @OptionGroup var queue: QueueOptions
    @Flag(help: "A JSON report.") var json = false

    func run() throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        let progress = Progress(total: Int(q.stats.bytes), label: "verify")
        let report: Queue.VerifyReport
        do { report = try q.verify { progress.update($0) } } catch { throw fail(error.message) }
        progress.finish()
        if json {
            let bad = report.bad.map { #"{"sequence":\#($0.sequence),"table":"records","reason":\#(JSONString.literal($0.error.message))}"# }
                + report.badDead.map { #"{"sequence":\#($0.sequence),"table":"dead","reason":\#(JSONString.literal($0.error.message))}"# }
            print(#"{"records":\#(report.records),"events":\#(report.events),"stored_bytes":\#(report.storedBytes),"uncompressed_bytes":\#(report.uncompressedBytes),"dead_records":\#(report.deadRecords),"bad":[\#(bad.joined(separator: ","))]}"#)
        } else {
            for bad in report.bad { print("record \(bad.sequence): \(bad.error.message)") }
            for bad in report.badDead { print("dead record \(bad.sequence): \(bad.error.message)") }
            let problems = report.bad.count + report.badDead.count
            print("checked \(report.records) records (\(report.events) events, \(humanBytes(UInt64(report.storedBytes))) stored) and \(report.deadRecords) dead records: "
                + (problems == 0 ? "all good" : "\(problems) damaged; stop the agent and run `ferry-tools repair --data-dir \(queue.dataDir)`"))
        }
        if !report.bad.isEmpty || !report.badDead.isEmpty { throw ExitCode(1) }
    }
}

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite the queue keeping every good record; move damaged ones to a quarantine directory. The agent must be stopped.",
        discussion: "Like Logstash's pqrepair, but nothing is deleted: the old data.mdb is kept as data.mdb.before-repair-<time> until you delete it, and each damaged record's bytes are kept in quarantine-<time>/ with the reason."
    )
    @OptionGroup var queue: QueueOptions
    @Flag(help: "Do not ask for confirmation.") var yes = false

    func run() throws {
        print("repair will rewrite \(queue.dataDir)/data.mdb with every record that passes its checks, move damaged records to a quarantine directory, and keep the current data.mdb as a backup.")
        guard yes || confirm() else { throw fail("not confirmed; nothing was changed") }
        let report: Queue.RepairReport
        do {
            report = try Queue.repair(at: queue.dataDir)
        } catch where error.code == .locked {
            throw fail("\(error.message). Repair needs the queue to itself: stop the agent first.")
        } catch {
            throw fail(error.message)
        }
        print("kept \(report.kept) records (\(report.keptEvents) events) and \(report.deadKept) dead records")
        if report.quarantined.isEmpty {
            print("no damaged record found")
        } else {
            for bad in report.quarantined { print("quarantined record \(bad.sequence): \(bad.error.message)") }
            print("damaged records are in \(report.quarantineDirectory)")
        }
        print("the queue before the repair is kept as \(report.backup); delete it once you are satisfied")
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Give free space back to the file system (a compacting copy of LMDB). The agent must be stopped.")
    @OptionGroup var queue: QueueOptions

    func run() throws {
        do {
            let (before, after) = try Queue.compact(at: queue.dataDir)
            print("data.mdb: \(humanBytes(UInt64(before))) → \(humanBytes(UInt64(after)))")
        } catch where error.code == .locked {
            throw fail("\(error.message). Compact needs the queue to itself: stop the agent first.")
        } catch {
            throw fail(error.message)
        }
    }
}

struct Purge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete every waiting record (not the dead ones). The agent must be stopped.")
    @OptionGroup var queue: QueueOptions
    @Flag(help: "Do not ask for confirmation.") var yes = false

    func run() async throws {
        let q = try queue.openExclusive()
        defer { q.close() }
        let stats = q.stats
        print("purge will delete \(stats.records) waiting records (\(stats.events) events) from \(queue.dataDir); they will never be delivered.")
        guard yes || confirm() else { throw fail("not confirmed; nothing was deleted") }
        do {
            let (records, events) = try await q.purgeRecords()
            print("deleted \(records) records (\(events) events)")
        } catch { throw fail(error.message) }
    }
}

func confirm() -> Bool {
    guard isatty(0) == 1 else {
        stderr("standard input is not a terminal: pass --yes to confirm\n")
        return false
    }
    stderr("continue? [y/N] ")
    return readLine()?.lowercased().hasPrefix("y") == true
}

// MARK: dlq

struct DLQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "The dead-letter table: records a downstream refused for good.",
        subcommands: [List.self, Show.self, Requeue.self, PurgeDead.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per dead record: sequence, events, moved at, outputs, reason.")
        @OptionGroup var queue: QueueOptions
        @Option(help: "Only this output's dead set (an output name; see `ferry-tools stats`). Default: every output's.") var output: String?
        @Flag(help: "JSON lines.") var json = false

        func run() throws {
            let q = try queue.openReadOnly()
            defer { q.close() }
            var from: UInt64 = 0
            while true {
                let page = try q.deadRecords(from: from, maxRecords: 256, output: output)
                guard let last = page.last else { break }
                from = last.sequence + 1
                for d in page {
                    let events = (try? d.record.get().eventCount).map { "\($0)" } ?? "?"
                    if json {
                        let outputs = d.outputs.map(JSONString.literal).joined(separator: ",")
                        print(#"{"sequence":\#(d.sequence),"events":\#(events == "?" ? "null" : events),"moved_at":"\#(isoTime(d.movedAt))","outputs":[\#(outputs)],"reason":\#(JSONString.literal(d.reason))}"#)
                    } else {
                        print("\(d.sequence)\t\(events) events\t\(isoTime(d.movedAt))\t\(d.outputs.joined(separator: ","))\t\(d.reason)")
                    }
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The reason and the events of one dead record.")
        @OptionGroup var queue: QueueOptions
        @Argument(help: "Sequence number.") var sequence: UInt64

        func run() throws {
            let q = try queue.openReadOnly()
            defer { q.close() }
            guard let d = try q.deadRecords(from: sequence, maxRecords: 1).first, d.sequence == sequence else {
                throw fail("no dead record \(sequence); list them with `ferry-tools dlq list`")
            }
            print("sequence: \(d.sequence)\nmoved at: \(isoTime(d.movedAt))\noutputs:  \(d.outputs.joined(separator: ", "))\nreason:   \(d.reason)")
            switch d.record {
            case .success(let record):
                for line in (try? record.events()) ?? [] { print(String(buffer: line)) }
            case .failure(let error):
                print("the record cannot be read: \(error.message)")
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move dead records back to the queue (after what waits now). The agent must be stopped.")
        @OptionGroup var queue: QueueOptions
        @Argument(help: "Sequence numbers; none with --all.") var sequences: [UInt64] = []
        @Flag(help: "Every dead record.") var all = false
        @Option(help: "Only this output's dead set (an output name; see `ferry-tools stats`). Default: every output's.") var output: String?

        func validate() throws {
            if sequences.isEmpty != all { throw ValidationError("give sequence numbers, or --all") }
        }

        func run() async throws {
            let q = try queue.openExclusive()
            defer { q.close() }
            do {
                let count = try await q.requeueDead(all ? nil : sequences, output: output)
                print("requeued \(count) records; the agent delivers them after its next start, to \(output.map { "output \($0) only" } ?? "the outputs that buried them")")
            } catch { throw fail(error.message) }
        }
    }

    struct PurgeDead: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "purge", abstract: "Delete dead records for good. The agent must be stopped.")
        @OptionGroup var queue: QueueOptions
        @Argument(help: "Sequence numbers; none with --all.") var sequences: [UInt64] = []
        @Flag(help: "Every dead record.") var all = false
        @Option(help: "Only this output's dead set (an output name; see `ferry-tools stats`). Default: every output's.") var output: String?
        @Flag(help: "Do not ask for confirmation.") var yes = false

        func validate() throws {
            if sequences.isEmpty != all { throw ValidationError("give sequence numbers, or --all") }
        }

        func run() async throws {
            let q = try queue.openExclusive()
            defer { q.close() }
            let what = (all ? "all \(q.stats.deadRecords) dead records" : "dead records \(sequences.map(String.init).joined(separator: ", "))")
                + (output.map { " of output \($0)" } ?? "")
            print("purge will delete \(what) from \(queue.dataDir) for good.")
            guard yes || confirm() else { throw fail("not confirmed; nothing was deleted") }
            do {
                let count = try await q.purgeDead(all ? nil : sequences, output: output)
                print("deleted \(count) dead records")
            } catch { throw fail(error.message) }
        }
    }
}
