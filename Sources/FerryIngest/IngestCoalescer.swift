import NIOConcurrencyHelpers
import NIOCore

/// Small uploads that end on one event loop in the same pass over its sockets, appended as one batch
/// (`IngestHandler.store(coalesced:on:)`): their events go into one record, one gzip member, through one queue
/// operation.
///
/// Why: a single-event request alone cost a gzip member of its own (~5 µs of zlib for 150 bytes, most of it
/// building Huffman trees, while the member came out barely smaller than the event) and a queue operation
/// of its own (a child transaction, a record, closures) on the writer. Under many clients an event loop
/// reads several requests per wake-up (7 on average with 64 connections in `tools/bench/ingest`), and
/// packed together they compress as a batch does. Nothing waits for it: the uploads finished while the
/// loop handles its ready sockets are appended by a task that runs right after them, in the same pass.
///
/// A request's answer is still its own: 200 with its own count once the batch is committed. If the queue
/// refuses the batch for want of room, each upload is appended alone, so that a refusal (429 when full) is
/// decided per request as before. Uploads with a `Ferry-Batch` id are never packed: their id marks exactly
/// their events.
///
/// Used on its event loop only (`add`), hence `@unchecked Sendable`: it is shared through the per-loop
/// registry (`IngestCoalescers`), which hands each loop its own.
final class IngestCoalescer: @unchecked Sendable {
    /// Uploads of at most this many bytes of events are packed; larger ones are compressed on their own.
    static let maxUploadBytes = 16 << 10
    /// Once this many bytes wait, they are appended at once instead of at the end of the pass.
    static let maxWaitingBytes = 256 << 10

    private let loop: any EventLoop
    private let handler: IngestHandler
    private var waiting: [IngestHandler.Pending] = []
    private var waitingBytes = 0
    private var flushScheduled = false

    init(loop: any EventLoop, handler: IngestHandler) {
        self.loop = loop
        self.handler = handler
    }

    /// Takes `upload` for the append at the end of this pass of the event loop.
    func add(_ upload: IngestHandler.Pending) {
        loop.preconditionInEventLoop()
        waiting.append(upload)
        waitingBytes += upload.lines.readableBytes
        if waitingBytes >= Self.maxWaitingBytes {
            flush()
        } else if !flushScheduled {
            flushScheduled = true
            loop.execute { [self] in
                flushScheduled = false
                flush()
            }
        }
    }

    private func flush() {
        guard !waiting.isEmpty else { return }
        let uploads = waiting
        waiting = []
        waitingBytes = 0
        handler.store(coalesced: uploads, on: loop)
    }
}

/// One `IngestCoalescer` per event loop of a server.
final class IngestCoalescers: Sendable {
    private let handler: IngestHandler
    private let byLoop = NIOLockedValueBox<[ObjectIdentifier: IngestCoalescer]>([:])

    init(handler: IngestHandler) {
        self.handler = handler
    }

    /// The coalescer of `loop` (made at its first connection).
    func coalescer(for loop: any EventLoop) -> IngestCoalescer {
        byLoop.withLockedValue { coalescers in
            if let coalescer = coalescers[ObjectIdentifier(loop)] { return coalescer }
            let coalescer = IngestCoalescer(loop: loop, handler: handler)
            coalescers[ObjectIdentifier(loop)] = coalescer
            return coalescer
        }
    }
}
