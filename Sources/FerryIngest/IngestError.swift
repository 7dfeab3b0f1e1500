/// Why the ingest refused a request: the HTTP status, a stable reason (a metric label) and a message that
/// names the problem — and for malformed input the line — and says what to do. Nothing of a refused
/// request is stored.
package struct IngestError: Error, Hashable, Sendable, CustomStringConvertible {
    /// HTTP status code of the answer.
    package let status: Int
    /// Stable, short: `invalid_json`, `invalid_utf8`, `invalid_gzip`, `empty_body`, `body_too_large`,
    /// `event_too_large`, `too_many_events`, `unsupported_media_type`, `unsupported_encoding`,
    /// `unauthorized`, `invalid_batch_id`, `queue_full`, `shutting_down`, `timeout`, `internal`.
    package let reason: String
    package let message: String
    /// The 1-based line of the (decompressed) body where the problem is, for malformed input.
    package let line: Int?
    /// True when the queue refused the events (full, closed): the intake counted it already.
    var fromQueue = false

    package init(status: Int, reason: String, message: String, line: Int? = nil) {
        self.status = status
        self.reason = reason
        self.message = message
        self.line = line
    }

    package var description: String { "\(status) \(reason): \(message)" }

    /// `error` as a refusal: itself when it is one (what the decoder and the head's checks throw), else 500.
    static func refusal(_ error: any Error) -> IngestError {
        error as? IngestError ?? IngestError(status: 500, reason: "internal", message: "\(error); retry later")
    }

    static func invalidJSON(line: Int, _ detail: String) -> IngestError {
        IngestError(status: 400, reason: "invalid_json", message: "line \(line): \(detail); send one JSON object per line", line: line)
    }

    static func invalidUTF8(line: Int) -> IngestError {
        IngestError(status: 400, reason: "invalid_utf8", message: "line \(line) is not valid UTF-8; send UTF-8 text", line: line)
    }

    static func bodyTooLarge(_ what: String, limit: Int) -> IngestError {
        IngestError(status: 413, reason: "body_too_large", message: "\(what) is larger than the limit of \(limit) bytes; send smaller requests or raise input.http.limits")
    }
}
