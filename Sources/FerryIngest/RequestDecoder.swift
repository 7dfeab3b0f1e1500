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
            let media = HTTPToken.trimmed(contentType[..<(contentType.utf8.firstIndex(of: UInt8(ascii: ";")) ?? contentType.endIndex)])
            if HTTPToken.equals(media, "application/x-ndjson") || HTTPToken.equals(media, "application/ndjson")
                || HTTPToken.equals(media, "application/jsonlines") || HTTPToken.equals(media, "application/x-jsonlines") {
                self = .ndjson
            } else if HTTPToken.equals(media, "application/json") {
                self = .json
            } else if HTTPToken.equals(media, "text/plain") {
                self = .text
            } else {
                return nil
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
    /// Whether gzip members may be stored as they arrived (see `Member`).
    private let passThrough: Bool
    private var member = Member()
    /// Records stored as they arrived, for tests and metrics.
    package private(set) var membersStoredAsSent = 0

    /// The gzip member being inflated, while it may still be stored as it arrived.
    ///
    /// A gzip NDJSON body is often already a row of records: a Ferry edge sends its stored members back to
    /// back, and Logstash's output one member per request. A member that starts and ends at a line
    /// boundary, holds at most a record's worth of events (`RecordBuilder.defaultMaxRecordBytes`, or one
    /// event), none of them blank or ending in CR, and whose every event already has what the stamp adds
    /// (`@timestamp`; a stamp with `host` or `fields` changes every event, so it never passes through) is
    /// stored as one record with its compressed bytes as they came: its events are validated while it
    /// inflates, as any other, but not deflated a second time. Until the member ends its events are held
    /// here; if one of them disqualifies it, they go to the builder (and the rest of the member after them).
    private struct Member {
        /// False once the member cannot be stored as sent: its events go to the builder.
        var candidate = false
        /// The member's compressed bytes so far.
        var compressed = ByteBuffer()
        /// Its events so far, one after the other, and where each one is with its stamp mask.
        var text: [UInt8] = []
        var events: [(range: Range<Int>, present: UInt64)] = []
        /// Bytes the member inflated to so far.
        var inflated = 0
    }

    /// `stamp` is applied to every event as read at `readAt` (ms since the Unix epoch): the request's time.
    package init(format: Format, gzip: Bool, limits: IngestConfiguration.Limits, stamp: EventStamp = .none,
                 readAt: Int64 = currentTimeMilliseconds()) throws {
        self.format = format
        self.limits = limits
        keys = stamp.keys
        members = stamp.members(readAt: readAt)
        messagePresent = stamp.keys.mask(of: "message")
        passThrough = format == .ndjson && gzip && stamp.host == nil && stamp.fields.isEmpty
        do {
            inflater = gzip ? try GzipInflater(maxOutputBytes: limits.maxDecompressedBytes) : nil
        } catch {
            throw IngestError(status: 500, reason: "internal", message: error.message)
        }
        beginMember()
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
            try chunk.withUnsafeReadableBytes { (input) in
                var offset = 0
                repeat {
                    let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
                    scratch.clear()
                    let step: (consumed: Int, memberEnded: Bool)
                    do {
                        step = try inflater.inflateMember(rest, into: &scratch)
                    } catch let error as WireError {
                        throw Self.gzipError(error, limit: limits.maxDecompressedBytes)
                    }
                    if member.candidate { member.compressed.writeBytes(UnsafeRawBufferPointer(rebasing: rest[..<step.consumed])) }
                    member.inflated += scratch.readableBytes
                    let decoded = scratch
                    try decoded.withUnsafeReadableBytes { (raw) in try decodedPiece(raw) }
                    offset += step.consumed
                    if step.memberEnded {
                        try endMember()
                    } else if step.consumed == 0 {
                        break
                    }
                } while offset < input.count
            }
        } else {
            try chunk.withUnsafeReadableBytes { (raw) in try decodedPiece(raw) }
        }
    }

    /// Ends the body: checks that nothing is cut off and returns the events, encoded into records.
    package mutating func finish() throws -> EventBatch {
        try end()
        return builder.finish()
    }

    /// What `finishLines` gives: the events not compressed yet, or the batch.
    package enum Finished {
        /// Every event of the body, NDJSON (each line ending in a newline), not sealed into a record yet.
        case lines(ByteBuffer, events: UInt32)
        /// The body's records: it held a gzip member stored as it came, or more than a record's worth.
        case batch(EventBatch)
    }

    /// `finish`, except that a body whose events all still wait to be compressed gives them as they are,
    /// for `IngestCoalescer` to pack with the events of other requests into one record.
    package mutating func finishLines() throws -> Finished {
        try end()
        if let taken = builder.takeLines() { return .lines(taken.lines, events: taken.events) }
        return .batch(builder.finish())
    }

    /// Checks that the body is complete and holds at least one event.
    private mutating func end() throws {
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
        var carriageReturn = false
        if let last = bytes.last, last == 0x0D {  // CRLF
            bytes = UnsafeRawBufferPointer(rebasing: bytes.dropLast())
            carriageReturn = true
        }
        guard bytes.count <= limits.maxEventBytes else { throw eventTooLarge(line: line) }
        // Blank lines carry no event (Logstash's line codecs skip them too).
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
            if member.candidate { try storeMemberEventsInBuilder() }  // the stored member would hold the blank line
            return
        }
        switch format {
        case .ndjson:
            let present: UInt64
            do {
                present = try JSONValidator.validateObject(bytes, finding: keys)
            } catch {
                if UTF8Validation.firstInvalidOffset(bytes) != nil { throw IngestError.invalidUTF8(line: line) }
                throw IngestError.invalidJSON(line: line, error.description)
            }
            if member.candidate {
                let fits = member.text.isEmpty || member.text.count + member.events.count + bytes.count + 1 <= RecordBuilder.defaultMaxRecordBytes  // a newline after each event
                if carriageReturn || present & members.all != members.all || !fits { try storeMemberEventsInBuilder() }
            }
            if member.candidate {
                try countEvent()
                let start = member.text.count
                member.text.append(contentsOf: bytes)
                member.events.append((start..<member.text.count, present))
            } else {
                try add(bytes, present: present)
            }
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
                try JSONValidator.withSingleLine(object) { (event) in
                    guard event.count <= limits.maxEventBytes else { throw eventTooLarge(line: line) }
                    try add(event, present: TopLevelField.presence(of: keys, in: event))
                }
            }
        }
    }

    /// Adds one event, a valid JSON object whose stamped keys are `present`.
    private mutating func add(_ event: UnsafeRawBufferPointer, present: UInt64) throws {
        try countEvent()
        builder.append(object: event, adding: members, present: present)
    }

    private mutating func countEvent() throws {
        events += 1
        guard events <= limits.maxEventsPerRequest else {
            throw IngestError(status: 413, reason: "too_many_events", message: "the request holds more than \(limits.maxEventsPerRequest) events; send smaller requests or raise input.http.limits.max_events_per_request")
        }
    }

    /// A new gzip member starts: it may be stored as sent if it starts at a line boundary.
    private mutating func beginMember() {
        member.candidate = passThrough && pending.isEmpty
        member.compressed.clear()
        member.text.removeAll(keepingCapacity: true)
        member.events.removeAll(keepingCapacity: true)
        member.inflated = 0
    }

    /// The member ended: stored as it arrived when it still can be, and when it ended at a line boundary.
    private mutating func endMember() throws {
        if member.candidate && !pending.isEmpty { try storeMemberEventsInBuilder() }
        if member.candidate && !member.events.isEmpty {
            // Every inflated byte is an event and its newline (no blank line, no CR), as a record's payload is.
            assert(member.inflated == member.text.count + member.events.count)
            builder.append(member: member.compressed, eventCount: UInt32(member.events.count), uncompressedLength: UInt32(member.inflated))
            membersStoredAsSent += 1
        }
        beginMember()
    }

    /// The member cannot be stored as sent: its events so far go to the builder (stamped), and so will
    /// the rest of them.
    private mutating func storeMemberEventsInBuilder() throws {
        member.candidate = false
        member.text.withUnsafeBytes { text in
            for event in member.events {
                builder.append(object: UnsafeRawBufferPointer(rebasing: text[event.range]), adding: members, present: event.present)
            }
        }
        member.compressed.clear()
        member.text.removeAll(keepingCapacity: true)
        member.events.removeAll(keepingCapacity: true)
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
