package import FerryPipeline
import FerryQueue
import FerryWire
package import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The `file` input: follows the files its globs match and hands their lines, as events, to a sink together
/// with each file's new position, so that the queue stores both in one transaction.
///
/// Guarantees, given a sink that keeps its contract (`FileEventSink`):
/// - **Exactly once from file to queue**, whatever kills the process: a position is stored only with the
///   events read up to it, and reading resumes there.
/// - **Backpressure**: the next bytes are read only after the sink took the previous events; a full queue
///   pauses reading, nothing is skipped.
/// - Identity, rotation, truncation, copies and power loss follow `FileTracker`; line splitting, formats
///   and multiline follow `FileReader`.
/// - Scale: one inotify descriptor and one thread for all files (`DirectoryWatcher`), the globs rescanned
///   every `rescanInterval`, descriptors of quiet files closed after `closeIdle`. Idle, the input waits
///   without timers except the rescan.
///
/// Failure modes: a stored position that cannot be decoded is logged, counted and deleted (that file is read
/// as a new one: duplicates); a file that cannot be opened or read is skipped until it changes again.
package final class FileInput: Input, Sendable {
    /// The input's name: the `input` label of its metrics, part of its position keys.
    package let name: String
    let configuration: FileInputConfiguration
    let settings: ReadingSettings
    let globs: Globs
    let restored: [FileState]
    let damagedKeys: [[UInt8]]
    let sink: any FileEventSink
    let bootID: String
    let logger: Logger
    let clock: @Sendable () -> Int64
    let metrics: FileInputMetrics
    /// Opened once the first scan of the globs is done (or the input stopped before): `started()`.
    let firstScan = Latch()

    /// An input named `name` whose stored positions (`Queue.positions(prefix: FileState.keyPrefix(input:))`)
    /// are `storedPositions`. Throws `FileInputError` on an invalid configuration.
    package init(name: String, configuration: FileInputConfiguration, storedPositions: [(key: [UInt8], value: [UInt8])],
                 sink: any FileEventSink, bootID: String = FileSystem.bootID(), logger: Logger,
                 clock: @escaping @Sendable () -> Int64 = { currentTimeMilliseconds() }) throws(FileInputError) {
        self.name = name
        self.configuration = configuration
        self.settings = try configuration.readingSettings()
        self.globs = Globs(paths: configuration.paths, exclude: configuration.exclude)
        self.sink = sink
        self.bootID = bootID
        self.logger = logger
        self.clock = clock
        self.metrics = FileInputMetrics(input: name)
        var restored: [FileState] = []
        var damaged: [[UInt8]] = []
        for (key, value) in storedPositions {
            let keyText = String(decoding: key, as: UTF8.self)
            do {
                restored.append(try FileState(decoding: value, key: keyText))
            } catch {
                logger.error("stored file position cannot be read; that file will be read as a new one",
                             metadata: ["ferry.input.name": "\(name)", "ferry.input.file.key": "\(keyText)", "error": "\(error)"])
                metrics.damagedPositions.increment()
                damaged.append(key)
            }
        }
        self.restored = restored
        self.damagedKeys = damaged
    }

    /// The input of the agent: events go through `intake` (stamped, appended with the positions, paused
    /// while the queue is full), positions are restored from `intake.queue`. Throws `FileInputError` on an
    /// invalid configuration or when the stored positions cannot be read.
    package convenience init(intake: Intake, configuration: FileInputConfiguration, logger: Logger) throws(FileInputError) {
        let stored: [InputPosition]
        do {
            stored = try intake.queue.positions(withPrefix: FileState.keyPrefix(input: intake.input))
        } catch {
            throw FileInputError(.system, "the file input cannot read its stored positions: \(error.message); check the queue with ferry-tools verify")
        }
        // A deleted position is never returned; the optional is the queue's shape for writes.
        try self.init(name: intake.input, configuration: configuration,
                      storedPositions: stored.compactMap { position in position.value.map { (position.key, $0) } },
                      sink: IntakeSink(intake: intake), logger: logger)
    }

    /// Returns once the globs were scanned the first time: the files found then are followed (their reading
    /// may still be going on). The line says which globs are followed.
    package func started() async -> String {
        await firstScan.wait()
        var line = "Also read:    files \(configuration.paths.joined(separator: ", "))"
        if !configuration.exclude.isEmpty { line += " (except \(configuration.exclude.joined(separator: ", ")))" }
        return line
    }

    /// Follows the files until graceful shutdown or cancellation. Events read but not yet taken by the sink
    /// when it stops are simply not stored: their position is not either, so they are read again next start.
    package func run() async throws {
        defer { firstScan.open() }
        let watcher = try DirectoryWatcher()
        let wake = WakeSignal()
        let inbox = WatchInbox()
        watcher.start { events in
            inbox.add(events)
            wake.signal()
        }
        let loop = ReadingLoop(input: self, watcher: watcher)
        await withGracefulShutdownHandler {
            await loop.run(wake: wake, inbox: inbox)
        } onGracefulShutdown: {
            wake.signal()
        }
        loop.closeAll()
        await watcher.stop()
    }
}

/// Events from the watcher's thread, waiting for the loop.
final class WatchInbox: Sendable {
    private let events = Mutex<[DirectoryWatcher.Event]>([])

    func add(_ more: [DirectoryWatcher.Event]) { events.withLock { $0 += more } }

    func take() -> [DirectoryWatcher.Event] { events.withLock { events in defer { events = [] }; return events } }
}

/// The metrics of one file input (label `input`). Events, bytes and pauses are the seam's.
struct FileInputMetrics: Sendable {
    let restartsTruncated: Counter
    let restartsReplaced: Counter
    let restartsNotACopy: Counter
    let copies: Counter
    let lostPowerLoss: Counter
    let lostVanished: Counter
    let vanishedFiles: Counter
    let cutLines: Counter
    let skippedBytes: Counter
    let nulBytes: Counter
    let repairedEvents: Counter
    let wrappedEvents: Counter
    let truncatedEvents: Counter
    let damagedPositions: Counter
    let followed: Gauge

    init(input: String) {
        let label = [("input", input)]
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter { Counter(label: name, dimensions: label + extra) }
        restartsTruncated = counter("ferry_input_file_restarts_total", [("reason", "truncated")])
        restartsReplaced = counter("ferry_input_file_restarts_total", [("reason", "replaced")])
        restartsNotACopy = counter("ferry_input_file_restarts_total", [("reason", "not_a_copy")])
        copies = counter("ferry_input_file_copies_total")
        lostPowerLoss = counter("ferry_input_file_lost_bytes_total", [("reason", "power_loss")])
        lostVanished = counter("ferry_input_file_lost_bytes_total", [("reason", "vanished")])
        vanishedFiles = counter("ferry_input_file_vanished_total")
        cutLines = counter("ferry_input_file_cut_lines_total")
        skippedBytes = counter("ferry_input_file_skipped_bytes_total")
        nulBytes = counter("ferry_input_file_nul_bytes_total")
        repairedEvents = counter("ferry_input_file_repaired_events_total")
        wrappedEvents = counter("ferry_input_file_wrapped_events_total")
        truncatedEvents = counter("ferry_input_file_cut_events_total")
        damagedPositions = counter("ferry_input_file_damaged_positions_total")
        followed = Gauge(label: "ferry_input_file_followed", dimensions: label)
    }

    /// Adds what a reader counted since `before`.
    func add(_ now: ReadingCounts, since before: ReadingCounts) {
        func bump(_ counter: Counter, _ delta: Int) { if delta > 0 { counter.increment(by: delta) } }
        bump(cutLines, now.truncatedLines - before.truncatedLines)
        bump(skippedBytes, now.skippedBytes - before.skippedBytes)
        bump(nulBytes, now.nulBytes - before.nulBytes)
        bump(repairedEvents, now.repairedEvents - before.repairedEvents)
        bump(wrappedEvents, now.wrappedEvents - before.wrappedEvents)
        bump(truncatedEvents, now.truncatedEvents - before.truncatedEvents)
    }
}
