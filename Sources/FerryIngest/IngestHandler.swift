import FerryPipeline
import FerryQueue
import FerryWire
import FoundationEssentials
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// What `POST /` does: authenticate, pick the decoder from the headers, stream the body through it,
/// append the events (one group commit with the other requests in flight), answer.
struct IngestHandler: Sendable {
    /// `auth` and the limits, read once per request: SIGHUP may change them on a running server.
    let settings: IngestLiveSettings
    /// The seam into the queue: stamps the events, appends once (a full queue is a 429), counts.
    let intake: Intake
    let logger: Logger
    let metrics: IngestMetrics
    let isAccepting: @Sendable () -> Bool

    static let ferryBatch = HTTPField.Name("Ferry-Batch")!

    init(settings: IngestLiveSettings, intake: Intake, logger: Logger, metrics: IngestMetrics, isAccepting: @escaping @Sendable () -> Bool) {
        self.settings = settings
        self.intake = intake
        self.logger = logger
        self.metrics = metrics
        self.isAccepting = isAccepting
    }

    func handle(_ request: Request, context: IngestContext) async throws -> Response {
        do {
            let stored = try await store(request)
            return Self.response(answer(.success(stored), peer: context.remoteAddress))
        } catch let error as IngestError {
            return Self.response(answer(.failure(error), peer: context.remoteAddress))
        } catch {
            aborted(error)
            throw error
        }
    }

    /// The client went away mid-body (or the request deadline closed the connection): nothing was stored,
    /// and there is nobody to answer. Counted and logged.
    func aborted(_ error: any Error) {
        intake.rejected("client_disconnected")
        logger.debug("ingest request aborted", metadata: ["ferry.ingest.error": "\(error)"])
    }

    /// An upload under way: its request's head accepted, its body decoded as it arrives.
    struct Upload {
        var decoder: RequestDecoder
        /// Body bytes as they arrived (compressed, if they were).
        var received = 0
        /// The `Ferry-Batch` id, checked.
        let batchID: String?

        mutating func consume(_ chunk: ByteBuffer) throws {
            received += chunk.readableBytes
            try decoder.consume(chunk)
        }
    }

    /// The checks a request's head allows before its body (shutting down, credentials, media type,
    /// encoding, announced length, batch id): the upload to feed the body to, or the refusal (`IngestError`).
    func begin(_ head: RequestHead) throws -> Upload {
        guard isAccepting() else {
            throw IngestError(status: 503, reason: "shutting_down", message: "Ferry is shutting down; retry against it after it restarts or send to another host")
        }
        let settings = self.settings.current
        if let expectedCredentials = settings.credentials {
            guard let provided = Self.basicCredentials(head.authorization),
                  Self.constantTimeEqual(provided, expectedCredentials)
            else {
                throw IngestError(status: 401, reason: "unauthorized", message: "missing or wrong credentials; send HTTP basic auth with the configured user and password")
            }
        }
        guard let format = RequestDecoder.Format(contentType: head.contentType) else {
            throw IngestError(status: 415, reason: "unsupported_media_type", message: "Content-Type \(head.contentType ?? "") is not supported; use application/x-ndjson, application/json or text/plain")
        }
        let gzip: Bool
        let coding = HTTPToken.trimmed(Substring(head.contentEncoding ?? ""))
        if coding.isEmpty || HTTPToken.equals(coding, "identity") {
            gzip = false
        } else if HTTPToken.equals(coding, "gzip") || HTTPToken.equals(coding, "x-gzip") {
            gzip = true
        } else {
            throw IngestError(status: 415, reason: "unsupported_encoding", message: "Content-Encoding \(coding) is not supported; send gzip or no encoding")
        }
        if let length = head.length, length > settings.limits.maxBodyBytes {
            throw IngestError.bodyTooLarge("the request body (Content-Length \(length))", limit: settings.limits.maxBodyBytes)
        }
        let batchID: String?
        if let value = head.batch {
            guard let id = BatchID(value) else {
                throw IngestError(status: 400, reason: "invalid_batch_id", message: "Ferry-Batch header \"\(value.prefix(80))\" is not <agent-id>/<first-seq>-<last-seq>; fix the sender or drop the header")
            }
            batchID = id.description
        } else {
            batchID = nil
        }
        return Upload(decoder: try RequestDecoder(format: format, gzip: gzip, limits: settings.limits, stamp: intake.stamp), batchID: batchID)
    }

    /// Hummingbird's path: the body streamed through the upload, then the append awaited.
    private func store(_ request: Request) async throws -> (events: Int, duplicate: Bool) {
        var upload = try begin(RequestHead(request.headers))
        for try await chunk in request.body {
            try upload.consume(chunk)
        }
        let batch = try upload.decoder.finish()
        let start = ContinuousClock.now
        let receipt: Queue.AppendReceipt
        do {
            receipt = try await intake.append(batch, sourceBytes: upload.received, batchID: upload.batchID)
        } catch {
            throw Self.ingestError(error)
        }
        return stored(receipt, batch: batch, since: start)
    }

    /// What the event-loop path hands on: the outcome of an upload, given on the queue's writer thread.
    typealias Completion = @Sendable (Result<(events: Int, duplicate: Bool), IngestError>) -> Void

    /// A small upload's events, not compressed yet, waiting in its event loop's `IngestCoalescer`.
    struct Pending {
        /// NDJSON, every line ending in a newline.
        let lines: ByteBuffer
        let events: UInt32
        /// Body bytes as they arrived.
        let sourceBytes: Int
        let completion: Completion
    }

    /// The event-loop path (`FastIngest`): appends a complete upload and gives the outcome to `completion`
    /// on the queue's writer thread. An upload of at most `IngestCoalescer.maxUploadBytes` of events that
    /// are not compressed yet, without a `Ferry-Batch` id, goes through `coalescer` (when there is one),
    /// to be appended with the other uploads its event loop finishes in the same pass.
    func store(_ upload: consuming Upload, coalescer: IngestCoalescer?, completion: @escaping Completion) {
        var upload = upload
        let finished: RequestDecoder.Finished
        do {
            finished = try upload.decoder.finishLines()
        } catch {
            return completion(.failure(IngestError.refusal(error)))
        }
        switch finished {
        case .lines(let lines, let events):
            let pending = Pending(lines: lines, events: events, sourceBytes: upload.received, completion: completion)
            if let coalescer, upload.batchID == nil, lines.readableBytes <= IngestCoalescer.maxUploadBytes {
                coalescer.add(pending)
            } else {
                append(pending, batchID: upload.batchID)
            }
        case .batch(let batch):
            append(batch, sourceBytes: upload.received, batchID: upload.batchID, completion: completion)
        }
    }

    /// Appends the uploads an event loop's `IngestCoalescer` gathered as one batch: their events in one
    /// record (up to a record's worth) and one queue operation, instead of a gzip member and an operation
    /// each. If the queue refuses them together for want of room (full, or the lot larger than the whole
    /// queue), each is appended on its own, from `loop` (not from the writer thread, whose group waits for
    /// its completions), so that every request is decided as if it had come alone: a nearly full queue may
    /// still take some of them. Any other failure (closed, a failed commit) is every upload's.
    func store(coalesced uploads: [Pending], on loop: any EventLoop) {
        guard uploads.count > 1 else {
            for upload in uploads { append(upload, batchID: nil) }
            return
        }
        var builder = RecordBuilder()
        var sourceBytes = 0
        for upload in uploads {
            builder.append(lines: upload.lines, events: upload.events)
            sourceBytes += upload.sourceBytes
        }
        let batch = builder.finish()
        let start = ContinuousClock.now
        intake.append(batch, sourceBytes: sourceBytes, countsRefusal: false) { [self] result in
            switch result {
            case .success:
                // No `Ferry-Batch` id, so never a duplicate: each request stored all its events.
                let latency = (ContinuousClock.now - start).inNanoseconds
                for upload in uploads {
                    metrics.commit.recordNanoseconds(latency)
                    upload.completion(.success((Int(upload.events), false)))
                }
            case .failure(let error) where error.code == .full || error.code == .batchTooLarge:
                loop.execute { [self] in
                    for upload in uploads { append(upload, batchID: nil) }
                }
            case .failure(let error):
                let refusal = Self.ingestError(error)
                for upload in uploads {
                    intake.rejected(error)
                    upload.completion(.failure(refusal))
                }
            }
        }
    }

    /// Appends one upload's events, compressed alone.
    private func append(_ upload: Pending, batchID: String?) {
        var builder = RecordBuilder()
        builder.append(lines: upload.lines, events: upload.events)
        append(builder.finish(), sourceBytes: upload.sourceBytes, batchID: batchID, completion: upload.completion)
    }

    private func append(_ batch: EventBatch, sourceBytes: Int, batchID: String?, completion: @escaping Completion) {
        let start = ContinuousClock.now
        intake.append(batch, sourceBytes: sourceBytes, batchID: batchID) { [self] result in
            switch result {
            case .success(let receipt): completion(.success(stored(receipt, batch: batch, since: start)))
            case .failure(let error): completion(.failure(Self.ingestError(error)))
            }
        }
    }

    /// Counts a commit: its time, and a duplicate.
    private func stored(_ receipt: Queue.AppendReceipt, batch: EventBatch, since start: ContinuousClock.Instant) -> (events: Int, duplicate: Bool) {
        metrics.commit.recordNanoseconds((ContinuousClock.now - start).inNanoseconds)
        if receipt.duplicate {
            metrics.duplicates.increment()
            return (0, true)
        }
        return (batch.eventCount, false)
    }

    /// What to answer: status, headers and body of the 200 or of the refusal, counted (and a refusal logged).
    func answer(_ outcome: Result<(events: Int, duplicate: Bool), IngestError>, peer: SocketAddress?) -> Answer {
        switch outcome {
        case .success(let stored):
            metrics.request(status: 200)
            return Answer(status: .ok, headers: Self.storedHeaders,
                          body: stored.duplicate ? #"{"stored":0,"duplicate":true}"# : #"{"stored":\#(stored.events)}"#)
        case .failure(let error):
            metrics.request(status: error.status)
            // Refusals by the queue are counted by the intake.
            if !error.fromQueue { intake.rejected(error.reason) }
            logger.debug("ingest request refused", metadata: [
                "ferry.ingest.reason": "\(error.reason)", "ferry.ingest.message": "\(error.message)",
                "ferry.ingest.peer": "\(peer?.description ?? "?")",
            ])
            return Self.answer(for: error)
        }
    }

    /// The headers of a 200 (built once: a literal is parsed and checked each time).
    private static let storedHeaders: HTTPFields = [.contentType: "application/json"]

    /// An answer, before it becomes Hummingbird's `Response` or the event-loop path's response parts.
    struct Answer {
        var status: HTTPResponse.Status
        /// Never `Content-Length`, `Date` or `Server`: the server adds them.
        var headers: HTTPFields
        var body: String
    }

    static func ingestError(_ error: QueueError) -> IngestError {
        var refusal: IngestError
        switch error.code {
        case .full:
            refusal = IngestError(status: 429, reason: "queue_full", message: "\(error.message)")
        case .batchTooLarge:
            refusal = IngestError(status: 413, reason: "body_too_large", message: error.message)
        case .closed:
            refusal = IngestError(status: 503, reason: "shutting_down", message: "the queue is closed; Ferry is shutting down, retry after it restarts")
        default:
            refusal = IngestError(status: 500, reason: "internal", message: "the events could not be stored (\(error.message)); retry later")
        }
        refusal.fromQueue = true
        return refusal
    }

    static func answer(for error: IngestError) -> Answer {
        var headers: HTTPFields = [.contentType: "application/json"]
        if error.status == 429 || error.status == 503 { headers[.retryAfter] = "5" }
        if error.status == 401 { headers[.wwwAuthenticate] = #"Basic realm="ferry""# }
        // After a refusal the rest of the upload is of no use: end the connection instead of reading it.
        if error.status == 413 || error.status == 400 || error.status == 415 { headers[.connection] = "close" }
        let line = error.line.map { #","line":\#($0)"# } ?? ""
        return Answer(status: .init(code: error.status), headers: headers,
                      body: #"{"error":"\#(error.reason)","message":\#(JSONString.literal(error.message))\#(line)}"#)
    }

    static func response(_ answer: Answer) -> Response {
        Response(status: answer.status, headers: answer.headers, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
    }

    /// `user:password` bytes from an `Authorization: Basic …` header.
    static func basicCredentials(_ header: String?) -> [UInt8]? {
        guard let header, header.count > 6, header.prefix(6).lowercased() == "basic " else { return nil }
        return Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters()).map { Array($0) }
    }

    /// Compares without leaking, through timing, how many leading bytes matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}

/// Whether an `Authorization` header carries exactly `auth`'s credentials (compared in constant time):
/// the check of every HTTP listener with `auth` (the ingest, the admin endpoints).
package func basicAuthAccepts(_ header: String?, _ auth: IngestConfiguration.BasicAuth) -> Bool {
    guard let provided = IngestHandler.basicCredentials(header) else { return false }
    return IngestHandler.constantTimeEqual(provided, Array("\(auth.username):\(auth.password)".utf8))
}
