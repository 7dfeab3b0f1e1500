package import FerryWire
package import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Turns a request body, fed chunk by chunk as it arrives, into an `EventBatch`, checking every limit as
/// soon as it can: compressed size, decompressed size (a gzip bomb stops at the limit), event size, event
/// count, JSON syntax and UTF-8. Every error thrown is an `IngestError`. All or nothing: any error means
/// nothing of the request is stored.
///
/// No I/O and no clock: the HTTP handler feeds it, tests feed it directly.
package struct RequestDecoder {
    /// The body's media type.
    package enum Format: Sendable, Hashable {
        /// `application/x-ndjson`: one JSON object per line (the Logstash `logstash` output's format).
        case ndjson
        /// `application/json`: one object, or an array of objects.
        case json
        /// `text/plain`: each non-empty line becomes `{"message": line}`.
        case text

        /// The format for a `Content-Type` value, nil if unsupported. Parameters (charset) are ignored.
        package init?(contentType: String?) {
            guard let contentType else { self = .ndjson; return }  // Logstash-style senders always set it; be lenient when absent
            let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters() } ?? ""
            switch media.lowercased() {
            case "application/x-ndjson", "application/ndjson", "application/jsonlines", "application/x-jsonlines": self = .ndjson
            case "application/json": self = .json
            case "text/plain": self = .text
            default: return nil
            }
        }
    }

    package let format: Format
    package let limits: IngestConfiguration.Limits
    private let inflater: GzipInflater?
    private var scratch = ByteBuffer()
    private var receivedBytes = 0
    private var decodedBytes = 0
    /// The current incomplete line (ndjson, text), or the whole body (json).
    private var pending: [UInt8] = []
    private var line = 0
    private var builder = RecordBuilder()
    private var events = 0
    /// What every event gets added (`EventStamp`), and the bits of the keys a text line's event has.
    private let keys: TopLevelKeys
    private let members: EventStamp.Members
    private let messagePresent: UInt64

    /// `stamp` is applied to every event as read at `readAt` (ms since the Unix epoch): the request's time.
    package init(format: Format, gzip: Bool, limits: IngestConfiguration.Limits, stamp: EventStamp = .none,
                 readAt: Int64 = currentTimeMilliseconds()) throws {
        self.format = format
        self.limits = limits
        keys = stamp.keys
        members = stamp.members(readAt: readAt)
        messagePresent = stamp.keys.mask(of: "message")
        do {
            inflater = gzip ? try GzipInflater(maxOutputBytes: limits.maxDecompressedBytes) : nil
        } catch {
            throw IngestError(status: 500, reason: "internal", message: error.message)
        }
    }

    /// Events accepted so far.
    package var eventCount: Int { events }

    /// Feeds the next piece of the body.
    package mutating func consume(_ chunk: ByteBuffer) throws {
        receivedBytes += chunk.readableBytes
        if receivedBytes > limits.maxBodyBytes {
            throw IngestError.bodyTooLarge("the request body", limit: limits.maxBodyBytes)
        }
        if let inflater {
            scratch.clear()
            do {
                try chunk.withUnsafeReadableBytes { try inflater.inflate($0, into: &scratch) }
            } catch let error as WireError {
                throw Self.gzipError(error, limit: limits.maxDecompressedBytes)
            }
            let decoded = scratch
            try decoded.withUnsafeReadableBytes { (raw) in try decodedPiece(raw) }
        } else {
            try chunk.withUnsafeReadableBytes { (raw) in try decodedPiece(raw) }
        }
    }

    /// Ends the body: checks that nothing is cut off and returns the events, encoded into records.
    package mutating func finish() throws -> EventBatch {
        if let inflater {
            do { try inflater.finish() } catch { throw Self.gzipError(error, limit: limits.maxDecompressedBytes) }
        }
        switch format {
        case .ndjson, .text:
            if !pending.isEmpty {
                line += 1
                let last = pending
                pending = []
                try last.withUnsafeBytes { (raw) in try acceptLine(raw) }
            }
        case .json:
            try acceptJSONBody()
        }
        guard events > 0 else {
            throw IngestError(status: 400, reason: "empty_body", message: "the request holds no events; send at least one JSON object")
        }
        return builder.finish()
    }

    // MARK: Internals

    private mutating func decodedPiece(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        decodedBytes += bytes.count
        if decodedBytes > limits.maxDecompressedBytes {
            throw IngestError.bodyTooLarge("the decompressed request body", limit: limits.maxDecompressedBytes)
        }
        if format == .json {
            pending.append(contentsOf: bytes)
            return
        }
        var start = 0
        while start < bytes.count {
            let remaining = bytes.count - start
            guard let found = memchr(bytes.baseAddress! + start, 0x0A, remaining) else {
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...]))
                if pending.count > limits.maxEventBytes { throw eventTooLarge(line: line + 1) }
                return
            }
            let end = UnsafeRawPointer(found) - bytes.baseAddress!
            line += 1
            if pending.isEmpty {
                try acceptLine(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            } else {
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
                let whole = pending
                pending.removeAll(keepingCapacity: true)
                try whole.withUnsafeBytes { (raw) in try acceptLine(raw) }
            }
            start = end + 1
        }
    }

    private func eventTooLarge(line: Int) -> IngestError {
        IngestError(status: 413, reason: "event_too_large", message: "the event on line \(line) is larger than the limit of \(limits.maxEventBytes) bytes; split it or raise input.http.limits.max_event_bytes", line: line)
    }

    private mutating func acceptLine(_ raw: UnsafeRawBufferPointer) throws {
        var bytes = raw
        if let last = bytes.last, last == 0x0D { bytes = UnsafeRawBufferPointer(rebasing: bytes.dropLast()) }  // CRLF
        guard bytes.count <= limits.maxEventBytes else { throw eventTooLarge(line: line) }
        // Blank lines carry no event (Logstash's line codecs skip them too).
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        switch format {
        case .ndjson:
            let present: UInt64
            do {
                present = try JSONValidator.validateObject(bytes, finding: keys)
            } catch {
                if UTF8Validation.firstInvalidOffset(bytes) != nil { throw IngestError.invalidUTF8(line: line) }
                throw IngestError.invalidJSON(line: line, error.description)
            }
            try add(bytes, present: present)
        case .text:
            if UTF8Validation.firstInvalidOffset(bytes) != nil { throw IngestError.invalidUTF8(line: line) }
            try NDJSON.messageEvent(bytes).withUnsafeBytes { (raw) in try add(raw, present: messagePresent) }
        case .json:
            preconditionFailure("JSON bodies are split by acceptJSONBody")
        }
    }

    private mutating func acceptJSONBody() throws {
        let body = pending
        pending = []
        try body.withUnsafeBytes { (all) throws in
            let ranges: [Range<Int>]
            do {
                ranges = try JSONValidator.objects(in: all)
            } catch let error as JSONSyntaxError {
                let line = Self.lineNumber(of: error.offset, in: all)
                if UTF8Validation.firstInvalidOffset(all) != nil { throw IngestError.invalidUTF8(line: line) }
                throw IngestError.invalidJSON(line: line, error.reason)
            }
            for range in ranges {
                let object = UnsafeRawBufferPointer(rebasing: all[range])
                line = Self.lineNumber(of: range.lowerBound, in: all)
                // A pretty-printed object spans lines; stored events are one line each.
                if memchr(object.baseAddress!, 0x0A, object.count) != nil || memchr(object.baseAddress!, 0x0D, object.count) != nil {
                    let compacted = JSONValidator.compact(object)
                    guard compacted.count <= limits.maxEventBytes else { throw eventTooLarge(line: line) }
                    try compacted.withUnsafeBytes { (raw) in try add(raw, present: TopLevelField.presence(of: keys, in: raw)) }
                } else {
                    guard object.count <= limits.maxEventBytes else { throw eventTooLarge(line: line) }
                    try add(object, present: TopLevelField.presence(of: keys, in: object))
                }
            }
        }
    }

    /// Adds one event, a valid JSON object whose stamped keys are `present`.
    private mutating func add(_ event: UnsafeRawBufferPointer, present: UInt64) throws {
        events += 1
        guard events <= limits.maxEventsPerRequest else {
            throw IngestError(status: 413, reason: "too_many_events", message: "the request holds more than \(limits.maxEventsPerRequest) events; send smaller requests or raise input.http.limits.max_events_per_request")
        }
        builder.append(object: event, adding: members, present: present)
    }

    static func lineNumber(of offset: Int, in bytes: UnsafeRawBufferPointer) -> Int {
        var line = 1
        for i in 0..<min(offset, bytes.count) where bytes[i] == 0x0A { line += 1 }
        return line
    }

    static func gzipError(_ error: WireError, limit: Int) -> IngestError {
        switch error.code {
        case .outputLimitExceeded: .bodyTooLarge("the decompressed request body", limit: limit)
        case .truncatedGzip: IngestError(status: 400, reason: "invalid_gzip", message: "the gzip body is cut short; send the whole body")
        default: IngestError(status: 400, reason: "invalid_gzip", message: "the body is not valid gzip (\(error.message)); send gzip or drop Content-Encoding: gzip")
        }
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
