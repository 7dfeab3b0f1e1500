import HTTPTypes

/// The fields of a request's head that the ingest reads, taken in one pass over them.
///
/// Why: each `HTTPFields` subscript walks every field and joins what it finds into a new string, and a
/// single-event request was read through eight of them (`FastIngest`, then `IngestHandler.begin`). With
/// the Unicode-aware trimming and lowercasing of the values, a profile put that at about 5 % of an event
/// loop's time. A repeated field reads as the subscript gives it: its values joined with ", ".
struct RequestHead {
    var contentType: String?
    var contentEncoding: String?
    var contentLength: String?
    var transferEncoding: String?
    var connection: String?
    var authorization: String?
    var batch: String?

    /// A head with none of these fields (filled in by `SimpleRequest`).
    init() {}

    init(_ fields: HTTPFields) {
        for field in fields {
            switch field.name {
            case .contentType: Self.add(field.value, to: &contentType)
            case .contentEncoding: Self.add(field.value, to: &contentEncoding)
            case .contentLength: Self.add(field.value, to: &contentLength)
            case .transferEncoding: Self.add(field.value, to: &transferEncoding)
            case .connection: Self.add(field.value, to: &connection)
            case .authorization: Self.add(field.value, to: &authorization)
            case IngestHandler.ferryBatch: Self.add(field.value, to: &batch)
            default: break
            }
        }
    }

    /// Adds a repeated field's value as `HTTPFields`' subscript gives it: joined with ", ".
    static func add(_ value: String, to slot: inout String?) {
        if let first = slot { slot = first + ", " + value } else { slot = value }
    }

    /// The announced body length, if it is one number.
    var length: Int? { contentLength.flatMap { Int($0) } }

    /// Whether the client asks to close the connection after this request.
    var asksToClose: Bool { HTTPToken.closes(connection) }
}

/// HTTP's case-insensitive tokens (media types, content codings, `Connection` options), compared as
/// HTTP compares them: ASCII letters in either case, spaces and tabs around a value not counted. On the
/// UTF-8 bytes, without Unicode tables and without a new string.
enum HTTPToken {
    /// `value` without the spaces and tabs around it.
    static func trimmed(_ value: Substring) -> Substring {
        let bytes = value.utf8
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else {
            return value[value.endIndex...]
        }
        // `last` may be inside a multi-byte character; the byte after it (a space, or the end) starts one.
        return value[first..<bytes.index(after: last)]
    }

    /// Whether `value` is `lowercase` (written in lower case), its letters in either case.
    static func equals(_ value: Substring, _ lowercase: StaticString) -> Bool {
        lowercase.withUTF8Buffer { expected in
            value.utf8.elementsEqual(expected) { byte, other in
                (byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte) == other
            }
        }
    }

    /// Whether the comma-separated list `value` (`Connection: keep-alive, Close`) holds `lowercase`.
    static func list(_ value: String, contains lowercase: StaticString) -> Bool {
        var rest = Substring(value)
        while true {
            let comma = rest.utf8.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
            if equals(trimmed(rest[..<comma]), lowercase) { return true }
            guard comma < rest.endIndex else { return false }
            rest = rest[rest.utf8.index(after: comma)...]
        }
    }

    /// Whether a `Connection` value (of a request or a response; nil when there is none) says `close`.
    static func closes(_ connection: String?) -> Bool {
        connection.map { list($0, contains: "close") } ?? false
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }
}
