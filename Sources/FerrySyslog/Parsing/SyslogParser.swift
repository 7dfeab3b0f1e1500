import FerryWire

/// Parses syslog messages (RFC 5424, RFC 3164 and what real senders make of it) into Ferry events: one JSON
/// object per message with the fields `@timestamp`, `hostname`, `appname`, `procid`, `msgid`, `facility`,
/// `severity`, `message`, `structured_data` and `source_ip`; parts a message does not have are left out.
///
/// Pure: no I/O and no clock. The caller passes the read time (`now`, used only to choose the year of an
/// RFC 3164 time) and the collector's zone comes in as a function, so every result is exact in tests.
/// Works on bytes: no `String` per message, and the JSON goes straight into the caller's buffer.
///
/// Guarantees:
/// - Every call appends exactly one valid JSON object (or nothing, for a message that is empty once its
///   trailing LF/CR/NUL are removed). Text goes through `JSONString`, the project's one escaper.
/// - A message that parses as neither RFC is never dropped: it becomes `{"message": <raw text>}` (plus
///   `source_ip`) and the result names the failure, for counting.
/// - Invalid UTF-8 is replaced by U+FFFD before parsing, and reported.
///
/// Decisions (also in docs/ARCHITECTURE.md, "Inputs → syslog and RELP"):
/// - RFC 5424 when the PRI is followed by a version, a space and then `-` or a digit; its grammar is then
///   followed strictly, except that a missing STRUCTURED-DATA (senders that put MSG right after MSGID) is
///   read as no structured data. Otherwise RFC 3164, read as leniently as rsyslog does (see
///   `SyslogParser+RFC3164.swift`).
/// - No PRI, or a PRI above 191 or malformed: neither RFC (`missing_pri`, `invalid_pri`).
/// - RFC 3164 times carry no year and no zone: the year is the one that puts the time closest to `now`,
///   and the zone is the collector's (`utcOffset`).
/// - Repeated SD-IDs are merged; a parameter repeated within an SD-ID (RFC 5424 allows it, e.g. `ip` of
///   `origin`) becomes an array of its values.
package struct SyslogParser {
    /// The offset from UTC, in seconds east, of the collector's zone at a moment given in seconds since the
    /// epoch. Production uses `SyslogParser.localUTCOffset` (the C library's `localtime_r`).
    package typealias UTCOffset = @Sendable (_ utcSeconds: Int64) -> Int

    private let utcOffset: UTCOffset
    private var offsetCache = OffsetCache()
    // Scratch space reused across messages, so that structured data costs no allocation per message.
    var elements: [StructuredDataElement] = []
    var parameters: [StructuredDataParameter] = []
    var unescaped: [UInt8] = []

    package init(utcOffset: @escaping UTCOffset = SyslogParser.localUTCOffset) {
        self.utcOffset = utcOffset
    }

    /// Appends the event for `raw` (one message, without framing) to `out`.
    ///
    /// - Parameters:
    ///   - raw: the message as received; trailing LF, CR and NUL bytes are ignored.
    ///   - sourceIP: the sender's address as text, stored as `source_ip` (nil leaves it out).
    ///   - now: milliseconds since the epoch at which the message was read.
    /// - Returns: what was found, or nil (and nothing appended) when the message is empty.
    package mutating func parse(
        _ raw: UnsafeRawBufferPointer, sourceIP: [UInt8]?, now: Int64, into out: inout [UInt8]
    ) -> SyslogParseResult? {
        var end = raw.count
        while end > 0, raw[end - 1] == 0x0A || raw[end - 1] == 0x0D || raw[end - 1] == 0x00 { end -= 1 }
        if end == 0 { return nil }
        let message = UnsafeRawBufferPointer(rebasing: raw[0..<end])
        if UTF8Validation.firstInvalidOffset(message) == nil {
            return parseValid(message, sourceIP: sourceIP, now: now, into: &out, replacedInvalidUTF8: false)
        }
        // Rare: a String round trip replaces each maximal invalid subpart with U+FFFD, as Unicode advises.
        let repaired = Array(String(decoding: message, as: UTF8.self).utf8)
        return repaired.withUnsafeBytes {
            parseValid($0, sourceIP: sourceIP, now: now, into: &out, replacedInvalidUTF8: true)
        }
    }

    private mutating func parseValid(
        _ bytes: UnsafeRawBufferPointer, sourceIP: [UInt8]?, now: Int64, into out: inout [UInt8], replacedInvalidUTF8: Bool
    ) -> SyslogParseResult {
        var result = SyslogParseResult(format: .unparsed, failure: nil, replacedInvalidUTF8: replacedInvalidUTF8, hasTimestamp: false)
        switch parseMessage(bytes, now: now) {
        case .success(let parsed):
            result.format = parsed.format
            result.hasTimestamp = parsed.time != nil
            write(parsed, in: bytes, sourceIP: sourceIP, to: &out)
        case .failure(let failure):
            result.failure = failure
            writeUnparsed(bytes, sourceIP: sourceIP, to: &out)
        }
        return result
    }

    private mutating func parseMessage(_ bytes: UnsafeRawBufferPointer, now: Int64) -> Result<ParsedMessage, SyslogParseFailure> {
        elements.removeAll(keepingCapacity: true)
        parameters.removeAll(keepingCapacity: true)
        guard bytes[0] == UInt8(ascii: "<") else { return .failure(.missingPriority) }
        var index = 1
        var priority = 0
        while index < bytes.count, index <= 4, let digit = digitValue(bytes[index]) {
            priority = priority * 10 + digit
            index += 1
        }
        guard index > 1, index <= 4, index < bytes.count, bytes[index] == UInt8(ascii: ">"), priority <= 191 else {
            return .failure(.invalidPriority)
        }
        index += 1
        var parsed = ParsedMessage(priority: priority)
        if looksLikeRFC5424(bytes, at: index) {
            parsed.format = .rfc5424
            if let failure = parseRFC5424(bytes, from: index, into: &parsed) { return .failure(failure) }
        } else {
            parsed.format = .rfc3164
            parseRFC3164(bytes, from: index, now: now, into: &parsed)
        }
        return .success(parsed)
    }

    /// VERSION (a digit 1–9 and up to two more), a space, then NILVALUE or the first digit of a time: a
    /// 3164 message whose text starts with "1 " does not qualify unless a digit or `-` follows.
    private func looksLikeRFC5424(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Bool {
        guard start < bytes.count, bytes[start] >= UInt8(ascii: "1"), bytes[start] <= UInt8(ascii: "9") else { return false }
        var index = start + 1
        while index < bytes.count, index < start + 3, digitValue(bytes[index]) != nil { index += 1 }
        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: " ") else { return false }
        let next = bytes[index + 1]
        return next == UInt8(ascii: "-") || digitValue(next) != nil
    }

    /// The zone's offset at `utcSeconds`, remembered per quarter hour: zone transitions fall on quarter hours.
    mutating func offset(atUTC utcSeconds: Int64) -> Int {
        let bucket = utcSeconds >= 0 ? utcSeconds / 900 : (utcSeconds - 899) / 900
        if let cached = offsetCache.lookup(bucket) { return cached }
        let value = utcOffset(utcSeconds)
        offsetCache.store(bucket, value)
        return value
    }

    /// Seconds since the epoch (UTC) of a civil time in the collector's zone. Around a change of the zone's
    /// offset, a time that occurs twice takes the earlier reading and one that does not occur is moved by
    /// the change, as `mktime` does.
    mutating func utcSeconds(ofLocal local: Int64) -> Int64 {
        let first = local - Int64(offset(atUTC: local))
        return local - Int64(offset(atUTC: first))
    }
}

/// What a message turned out to be; the server counts failures and invalid UTF-8 by kind.
package struct SyslogParseResult: Sendable, Hashable {
    package enum Format: String, Sendable, Hashable {
        case rfc5424, rfc3164, unparsed
    }

    package var format: Format
    /// Why the message is stored as raw text (`format == .unparsed`).
    package var failure: SyslogParseFailure?
    /// Invalid UTF-8 was replaced by U+FFFD (the message is still parsed and stored).
    package var replacedInvalidUTF8: Bool
    /// The event has its own `@timestamp`; the seam stamps the read time on those that have none.
    package var hasTimestamp: Bool
}

/// Why a message parsed as neither RFC (a metric label: `ferry_input_syslog_parse_failures_total{kind}`).
package enum SyslogParseFailure: String, Error, Sendable, Hashable, CaseIterable {
    /// The message does not start with `<`.
    case missingPriority = "missing_pri"
    /// `<...>` is not 1–3 digits with a value of at most 191.
    case invalidPriority = "invalid_pri"
    /// An RFC 5424 header ended early or a field is missing.
    case rfc5424Header = "rfc5424_header"
    /// The TIMESTAMP of an RFC 5424 header is neither `-` nor a valid RFC 3339 time.
    case rfc5424Timestamp = "rfc5424_timestamp"
    /// An SD-ELEMENT is malformed (unterminated, a parameter without `="..."`).
    case rfc5424StructuredData = "rfc5424_structured_data"
}

/// A time found in a message: seconds since the epoch (UTC) and a fraction of `digits` decimal digits.
struct SyslogTime: Hashable {
    var seconds: Int64
    var fraction: Int
    var digits: Int
}

/// One parsed message, as ranges of the bytes it was parsed from.
struct ParsedMessage {
    var format: SyslogParseResult.Format = .unparsed
    var priority: Int
    var time: SyslogTime?
    var hostname: Range<Int>?
    var appname: Range<Int>?
    var procid: Range<Int>?
    var msgid: Range<Int>?
    var message: Range<Int>?

    init(priority: Int) {
        self.priority = priority
    }
}

struct StructuredDataElement {
    var id: Range<Int>
    var firstParameter: Int
    var parameterCount: Int
}

struct StructuredDataParameter {
    var name: Range<Int>
    var value: Range<Int>
    /// The value holds a backslash: escapes are undone when it is written.
    var escaped: Bool
}

/// A few remembered zone offsets (quarter hour → offset); the year choice asks for three years at once.
private struct OffsetCache {
    private var keys: (Int64, Int64, Int64, Int64) = (.min, .min, .min, .min)
    private var values: (Int, Int, Int, Int) = (0, 0, 0, 0)
    private var next = 0

    func lookup(_ key: Int64) -> Int? {
        if keys.0 == key { return values.0 }
        if keys.1 == key { return values.1 }
        if keys.2 == key { return values.2 }
        if keys.3 == key { return values.3 }
        return nil
    }

    mutating func store(_ key: Int64, _ value: Int) {
        switch next {
        case 0: keys.0 = key; values.0 = value
        case 1: keys.1 = key; values.1 = value
        case 2: keys.2 = key; values.2 = value
        default: keys.3 = key; values.3 = value
        }
        next = (next + 1) & 3
    }
}

@inline(__always)
func digitValue(_ byte: UInt8) -> Int? {
    byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte &- UInt8(ascii: "0")) : nil
}
