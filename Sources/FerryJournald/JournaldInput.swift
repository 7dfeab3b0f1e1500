package import FerryPipeline
package import Metrics
package import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Where the journald input puts what it read. Shaped like the input seam's
/// `Intake.appendWaiting(_:positions:)`: the agent's adapter adds each event to an `IntakeBatch` and passes
/// `position` as the one `InputPosition`.
package protocol JournaldSink: Sendable {
    /// Stores `events` (possibly none) and `position` in one queue transaction, waiting (without reading on)
    /// while the queue is full or failing. Returns false when Ferry stops first: then nothing was stored.
    func appendWaiting(_ events: JournalEvents, position: JournalPosition) async -> Bool
}

/// The `journald` input: reads the systemd journal through sd-journal and appends one event per entry,
/// with the cursor of the last entry of each append stored in the same transaction (journal → queue exactly
/// once; see `JournalPosition`).
///
/// - Start: after the stored cursor; a cursor the journal no longer has reads again from the oldest entry,
///   logged and counted (`ferry_journald_gaps_total`); without a stored cursor, `start_at` (default `end`).
/// - Backpressure: each append is awaited before more than one further batch is read, so a full queue
///   pauses reading (the journal keeps the entries; nothing is dropped).
/// - Waiting: the journal's own inotify descriptor is the only wake-up (no timer on a local file system), on a
///   thread of the input's own, never on Swift's cooperative pool. Shutdown wakes it through a pipe.
/// - Refuses to start (throws from `init`) when the journal cannot be opened or read, saying what to do.
///
/// Metrics (dimension `input`): `ferry_journald_entries_total` (entries stored), `ferry_journald_gaps_total`,
/// `ferry_journald_binary_fields_total`, `ferry_journald_damaged_entries_total`.
package final class JournaldInput: Input, Sendable {
    /// The input's name: the `input` dimension of its metrics and the key of its position.
    package let name: String
    private let configuration: JournaldInputConfiguration
    private let storedCursor: String?
    private let sink: any JournaldSink
    private let reader: JournalReader
    private let logger: Logger
    private let metrics: Metrics
    /// Opened once the start position is found (or the input stopped first): `started()`.
    private let startedLatch = Latch()

    struct Metrics: Sendable {
        let entries: Counter
        let gaps: Counter
        let binaryFields: Counter
        let damagedEntries: Counter

        init(input: String, factory: any MetricsFactory) {
            let dimensions = [("input", input)]
            entries = Counter(label: "ferry_journald_entries_total", dimensions: dimensions, factory: factory)
            gaps = Counter(label: "ferry_journald_gaps_total", dimensions: dimensions, factory: factory)
            binaryFields = Counter(label: "ferry_journald_binary_fields_total", dimensions: dimensions, factory: factory)
            damagedEntries = Counter(label: "ferry_journald_damaged_entries_total", dimensions: dimensions, factory: factory)
        }
    }

    /// Opens the journal. `storedPosition` is the value stored under `JournalPosition.key(input: name)` in the
    /// queue's `positions` table, nil when there is none. Throws when the configuration is invalid, the stored
    /// position is of an unknown version, or the journal cannot be opened or read (what to do is in the message).
    package init(name: String, configuration: JournaldInputConfiguration, storedPosition: [UInt8]?, sink: any JournaldSink,
                 logger: Logger = Logger(label: "ferry.input.journald"), metricsFactory: any MetricsFactory = MetricsSystem.factory) throws(JournaldError) {
        var logger = logger
        logger[metadataKey: "ferry.input.name"] = "\(name)"
        self.name = name
        self.configuration = configuration
        self.storedCursor = try storedPosition.map { value throws(JournaldError) in try JournalPosition.cursor(from: value) }
        self.sink = sink
        self.logger = logger
        self.metrics = Metrics(input: name, factory: metricsFactory)
        self.reader = try JournalReader(configuration: configuration) { warning in
            logger.warning("journald input: some of the journal cannot be read", metadata: ["ferry.input.journald.problem": "\(warning)"])
        }
    }

    /// The input of the agent: events go through `intake` (stamped, appended with the cursor in one transaction,
    /// paused while the queue is full); the cursor is restored from `intake.queue`. Throws `JournaldError` on an
    /// invalid configuration, a stored position it cannot read, or a journal that cannot be opened.
    package convenience init(intake: Intake, configuration: JournaldInputConfiguration, logger: Logger,
                             metricsFactory: any MetricsFactory = MetricsSystem.factory) throws(JournaldError) {
        try configuration.validate()
        let key = JournalPosition.key(input: intake.input)
        let stored: [UInt8]?
        do {
            // The prefix could match another input whose name extends this one: the key is compared whole.
            stored = try intake.queue.positions(withPrefix: key).first { $0.key == key }?.value
        } catch {
            throw JournaldError(.cannotOpen, "the journald input cannot read its stored cursor: \(error.message); check the queue with ferry-tools verify")
        }
        try self.init(name: intake.input, configuration: configuration, storedPosition: stored, sink: JournaldIntakeSink(intake: intake),
                      logger: logger, metricsFactory: metricsFactory)
    }

    /// Returns once the start position is found (after the stored cursor, the oldest entry, or the end); the
    /// line says which journal is read.
    package func started() async -> String {
        await startedLatch.wait()
        let journal: String
        switch configuration.source {
        case .system: journal = "the system journal"
        case .directory(let path): journal = "the journal in \(path)"
        case .files(let paths): journal = "the journal files \(paths.joined(separator: ", "))"
        }
        var filters: [String] = []
        if !configuration.units.isEmpty { filters.append("units \(configuration.units.joined(separator: ", "))") }
        if !configuration.identifiers.isEmpty { filters.append("identifiers \(configuration.identifiers.joined(separator: ", "))") }
        if !configuration.matches.isEmpty { filters.append("matches \(configuration.matches.joined(separator: ", "))") }
        return "Also read:    \(journal)" + (filters.isEmpty ? "" : " (\(filters.joined(separator: "; ")))")
    }

    package func run() async throws {
        defer { startedLatch.open() }
        // One thread of its own: sd-journal wants one thread at a time, and `wait` blocks it for as long as the
        // journal is quiet, which must not hold a thread of a shared pool.
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        do {
            try await withTaskCancellationHandler {
                try await withGracefulShutdownHandler {
                    try await readLoop(on: thread)
                } onGracefulShutdown: { [reader] in
                    reader.stop()
                }
            } onCancel: { [reader] in
                reader.stop()
            }
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
        try await thread.shutdownGracefully()
    }

    private func readLoop(on thread: NIOThreadPool) async throws {
        let reader = self.reader
        let (storedCursor, startAt) = (self.storedCursor, configuration.startAt)
        let start = try await thread.runIfActive { try reader.start(storedCursor: storedCursor, startAt: startAt) }
        switch start {
        case .resumed:
            logger.info("journald input resumes after the stored cursor", metadata: ["ferry.input.journald.cursor": "\(storedCursor ?? "")"])
        case .gap(let lost):
            metrics.gaps.increment()
            logger.warning("journald input: the stored cursor is no longer in the journal (rotated or vacuumed); reading from the oldest entry, entries in between are lost",
                           metadata: ["ferry.input.journald.cursor": "\(lost)"])
        case .beginning:
            logger.info("journald input starts at the oldest entry (no stored cursor, start_at beginning)")
        case .end(let cursor):
            logger.info("journald input starts after the last entry (no stored cursor, start_at end)")
            // Stored at once: a restart before the next entry must not start at the end again and miss what was
            // written meanwhile.
            if let cursor {
                guard await sink.appendWaiting(JournalEvents(), position: JournalPosition(input: name, cursor: cursor)) else { return }
            }
        }
        startedLatch.open()

        let (maxEntries, maxBytes) = (configuration.maxEntriesPerAppend, configuration.maxBytesPerAppend)
        let read: @Sendable () throws -> JournalReader.Batch = { try reader.read(maxEntries: maxEntries, maxBytes: maxBytes) }
        var batch = try await thread.runIfActive(read)
        var failing = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if let failure = batch.failure {
                // Logged once per streak: a damaged file fails at each change until journald rotates it.
                if !failing { logger.error("journald input cannot read on; waiting for the journal to change", metadata: ["ferry.input.journald.error": "\(failure)"]) }
                failing = true
            } else if !batch.events.isEmpty {
                failing = false
            }
            if batch.events.isEmpty {
                switch try await thread.runIfActive({ try reader.wait() }) {
                case .stopped: return
                case .changed: break
                case .gap(let lost):
                    metrics.gaps.increment()
                    logger.warning("journald input: the last entry read was removed from the journal (vacuumed); reading from the oldest entry, entries in between are lost",
                                   metadata: ["ferry.input.journald.cursor": "\(lost)"])
                }
                batch = try await thread.runIfActive(read)
                continue
            }
            // The next batch is read while this one is stored: reading and the queue's fsync overlap, and at most
            // one batch is read ahead of what the queue took.
            async let following = thread.runIfActive(read)
            let stored = await sink.appendWaiting(batch.events, position: JournalPosition(input: name, cursor: batch.cursor!))
            let next = try await following
            guard stored else { return }
            metrics.entries.increment(by: batch.events.count)
            if batch.binaryValues > 0 { metrics.binaryFields.increment(by: batch.binaryValues) }
            if batch.damagedEntries > 0 {
                metrics.damagedEntries.increment(by: batch.damagedEntries)
                logger.warning("journald input: some fields of entries could not be read (damaged journal file); stored what could be read",
                               metadata: ["ferry.input.journald.entries": "\(batch.damagedEntries)"])
            }
            batch = next
        }
    }
}
