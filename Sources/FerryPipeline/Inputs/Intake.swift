package import FerryQueue
package import FerryWire
package import Logging
package import Metrics
import ServiceLifecycle

/// The one way into the queue, for every input (`http`, `kafka`, `file`, `journald`, `syslog`, `relp`):
/// it stamps events (`EventStamp`: `@timestamp` at read time when an event has none, `host`, constant
/// `fields`), appends them, owns backpressure and counts, per input.
///
/// ## Backpressure
/// - `append` tries once and throws `full` to the caller: for inputs whose client can be told to come back
///   (the HTTP ingest answers 429 + Retry-After).
/// - `appendWaiting` retries until the events are stored or Ferry stops, with the one `Backoff`; the input
///   awaits it before reading its source on, so a full queue pauses the source (a socket not read, a file
///   or the journal not followed) instead of buffering in memory. Each wait counts one pause.
///
/// ## Acknowledgement
/// The input acknowledges its source only after the commit: when `append` returns (the HTTP 200, the RELP
/// `rsp`, a Kafka offset commit), or through `acknowledge`, run after the commit. A read position (a file
/// offset, a journal cursor) goes *into* the transaction of the events: pass it as `positions`.
///
/// ## Counting (label `input`)
/// `ferry_input_events_total`, `ferry_input_bytes_total` (bytes as read from the source),
/// `ferry_input_rejections_total{reason}` (a refused append: `queue_full`, `too_large`, `closed`, ...),
/// `ferry_input_pauses_total` (waits for room).
package final class Intake: Sendable {
    /// The input's name: its metrics' `input` label and its logs' `ferry.input`.
    package let input: String
    package let queue: Queue
    package let stamp: EventStamp
    private let logger: Logger
    private let backoff: Backoff
    private let metrics: InputMetrics

    /// `metrics`: where the counters go; the process's metrics system unless a test counts them itself.
    package init(input: String, queue: Queue, stamp: EventStamp, logger: Logger,
                 backoff: Backoff = Backoff(base: .milliseconds(50), cap: .seconds(1)),
                 metrics factory: any MetricsFactory = MetricsSystem.factory) {
        self.input = input
        self.queue = queue
        self.stamp = stamp
        self.logger = logger
        self.backoff = backoff
        self.metrics = InputMetrics(input: input, factory: factory)
    }

    /// An empty batch whose events are stamped as read at `readAt` (ms since the Unix epoch).
    package func batch(readAt: Int64 = currentTimeMilliseconds()) -> IntakeBatch {
        IntakeBatch(stamp: stamp, readAt: readAt)
    }

    /// Appends once. Throws the queue's error (`full` when there is no room) after counting it; nothing of
    /// the batch is stored then. `acknowledge` runs after the commit, before this returns.
    @discardableResult
    package func append(_ batch: EventBatch, sourceBytes: Int, batchID: String? = nil, positions: [InputPosition] = [],
                        acknowledge: (@Sendable (Queue.AppendReceipt) async -> Void)? = nil) async throws(QueueError) -> Queue.AppendReceipt {
        let receipt: Queue.AppendReceipt
        do {
            receipt = try await queue.append(batch, batchID: batchID, positions: positions)
        } catch {
            metrics.rejected(Self.reason(error))
            throw error
        }
        counted(receipt, batch, sourceBytes: sourceBytes)
        await acknowledge?(receipt)
        return receipt
    }

    /// Appends once, for a caller that is not a task (the HTTP ingest's event-loop path): as `append`, with
    /// the outcome, counted, given to `completion` on the queue's writer thread (see `Queue.append`'s
    /// completion form) instead of returned. `countsRefusal: false` leaves a refusal uncounted, for a caller
    /// that tries the events again in smaller appends, whose refusals are counted.
    package func append(_ batch: EventBatch, sourceBytes: Int, batchID: String? = nil, countsRefusal: Bool = true,
                        completion: @escaping @Sendable (Result<Queue.AppendReceipt, QueueError>) -> Void) {
        queue.append(batch, batchID: batchID) { [self] result in
            switch result {
            case .success(let receipt): counted(receipt, batch, sourceBytes: sourceBytes)
            case .failure(let error): if countsRefusal { metrics.rejected(Self.reason(error)) }
            }
            completion(result)
        }
    }

    /// Appends `batch` once (see `append(_:sourceBytes:batchID:positions:acknowledge:)`).
    @discardableResult
    package func append(_ batch: IntakeBatch, batchID: String? = nil, positions: [InputPosition] = [],
                        acknowledge: (@Sendable (Queue.AppendReceipt) async -> Void)? = nil) async throws(QueueError) -> Queue.AppendReceipt {
        var batch = batch
        let (events, bytes) = batch.finish()
        return try await append(events, sourceBytes: bytes, batchID: batchID, positions: positions, acknowledge: acknowledge)
    }

    /// Appends, waiting while the queue cannot take the batch (full, or failing): retries with the backoff
    /// until it is stored, then runs `acknowledge`. Returns nil, with nothing stored, when Ferry stops
    /// (graceful shutdown or cancellation) first: the input reads those events again at its next start.
    @discardableResult
    package func appendWaiting(_ batch: EventBatch, sourceBytes: Int, positions: [InputPosition] = [],
                               acknowledge: (@Sendable (Queue.AppendReceipt) async -> Void)? = nil) async -> Queue.AppendReceipt? {
        var attempt = 0
        while true {
            do {
                let receipt = try await queue.append(batch, positions: positions)
                counted(receipt, batch, sourceBytes: sourceBytes)
                if attempt > 0 {
                    logger.info("input resumed: the queue takes events again", metadata: ["ferry.input": "\(input)", "ferry.input.attempts": "\(attempt + 1)"])
                }
                await acknowledge?(receipt)
                return receipt
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully || error.code == .closed { return nil }
                attempt += 1
                metrics.rejected(Self.reason(error))
                if attempt == 1 && error.code == .batchTooLarge {
                    // Retrying cannot help, and skipping would lose acknowledged-by-position data: stay paused,
                    // loudly, until the operator raises the bound (read at the next start).
                    metrics.pauses.increment()
                    logger.error("input stopped: one batch of its events is larger than the whole queue; raise queue.max_bytes and restart Ferry", metadata: [
                        "ferry.input": "\(input)", "ferry.queue.error": "\(error.message)",
                    ])
                } else if attempt == 1 {
                    metrics.pauses.increment()
                    logger.warning("input paused: the queue cannot take its events; it reads on once they are stored", metadata: [
                        "ferry.input": "\(input)", "ferry.queue.error": "\(error.message)",
                    ])
                }
                try? await Task.sleep(for: backoff.delay(attempt: attempt))
            }
        }
    }

    /// Appends `batch`, waiting for room (see `appendWaiting(_:sourceBytes:positions:acknowledge:)`).
    @discardableResult
    package func appendWaiting(_ batch: IntakeBatch, positions: [InputPosition] = [],
                               acknowledge: (@Sendable (Queue.AppendReceipt) async -> Void)? = nil) async -> Queue.AppendReceipt? {
        var batch = batch
        let (events, bytes) = batch.finish()
        return await appendWaiting(events, sourceBytes: bytes, positions: positions, acknowledge: acknowledge)
    }

    /// Counts a refusal the input made itself (a malformed request, a client that went away), under
    /// `ferry_input_rejections_total{reason}`. Refusals by the queue are counted by the appends.
    package func rejected(_ reason: String) {
        metrics.rejected(reason)
    }

    /// Counts a refusal by the queue that an append with `countsRefusal: false` left uncounted, once for
    /// each request it refused.
    package func rejected(_ error: QueueError) {
        metrics.rejected(Self.reason(error))
    }

    private func counted(_ receipt: Queue.AppendReceipt, _ batch: EventBatch, sourceBytes: Int) {
        guard !receipt.duplicate else { return }
        metrics.events.increment(by: batch.eventCount)
        metrics.bytes.increment(by: sourceBytes)
    }

    /// The `reason` label of a refused append.
    static func reason(_ error: QueueError) -> String {
        switch error.code {
        case .full: "queue_full"
        case .batchTooLarge: "too_large"
        case .closed: "closed"
        default: "queue_error"
        }
    }
}

/// The events of one append, stamped as they are added (see `EventStamp`) and packed into records.
package struct IntakeBatch {
    private let keys: TopLevelKeys
    private let members: EventStamp.Members
    private let messagePresent: UInt64
    private var builder = RecordBuilder()
    /// Bytes read from the source for these events (the `ferry_input_bytes_total` counter).
    package var sourceBytes = 0

    init(stamp: EventStamp, readAt: Int64) {
        keys = stamp.keys
        members = stamp.members(readAt: readAt)
        messagePresent = stamp.keys.mask(of: "message")
    }

    /// Events added so far.
    package var eventCount: Int { builder.eventCount }

    /// Adds a valid JSON object whose stamped keys are `present` (bits of `EventStamp.keys`, as
    /// `JSONValidator.validateObject(_:finding:)` returns them).
    package mutating func add(object: UnsafeRawBufferPointer, present: UInt64) {
        builder.append(object: object, adding: members, present: present)
    }

    /// Adds a valid JSON object the input did not validate with the stamp's keys: they are looked up.
    package mutating func add(object: UnsafeRawBufferPointer) {
        builder.append(object: object, adding: members, keys: keys)
    }

    /// Adds a valid JSON object the input built itself. `present` has the bits of the stamp's keys the
    /// object has: an input that builds its events computes `stamp.keys.mask(of:)` once per key it writes
    /// (`@timestamp` when it has a time of its own, `host`, ...) and ORs those of each event.
    package mutating func add(built object: [UInt8], present: UInt64) {
        object.withUnsafeBytes { builder.append(object: $0, adding: members, present: present) }
    }

    /// Adds `{"message": text}` (`text` valid UTF-8).
    package mutating func add(message text: UnsafeRawBufferPointer) {
        NDJSON.messageEvent(text).withUnsafeBytes { builder.append(object: $0, adding: members, present: messagePresent) }
    }

    /// The records, and the bytes read for them.
    package mutating func finish() -> (EventBatch, sourceBytes: Int) {
        (builder.finish(), sourceBytes)
    }
}

/// An input's counters, labelled with its name.
struct InputMetrics: Sendable {
    let input: String
    let factory: any MetricsFactory
    let events: Counter
    let bytes: Counter
    let pauses: Counter

    init(input: String, factory: any MetricsFactory) {
        self.input = input
        self.factory = factory
        events = Counter(label: "ferry_input_events_total", dimensions: [("input", input)], factory: factory)
        bytes = Counter(label: "ferry_input_bytes_total", dimensions: [("input", input)], factory: factory)
        pauses = Counter(label: "ferry_input_pauses_total", dimensions: [("input", input)], factory: factory)
    }

    func rejected(_ reason: String) {
        Counter(label: "ferry_input_rejections_total", dimensions: [("input", input), ("reason", reason)], factory: factory).increment()
    }
}
