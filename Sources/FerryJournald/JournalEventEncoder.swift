import FerryWire
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns the fields of one journal entry into one JSON event, byte for byte, without Foundation.
///
/// The event:
/// `{"@timestamp":"…","message":"…","unit":"…","identifier":"…","pid":1234,"severity":"err","journald":{…}}`
/// - `@timestamp`: the entry's realtime timestamp (when journald received it), RFC 3339 UTC with microseconds.
/// - `message`, `unit`, `identifier`: the first value of `MESSAGE`, `_SYSTEMD_UNIT`, `SYSLOG_IDENTIFIER`.
/// - `pid`: `_PID` as a JSON number (only when it is all digits).
/// - `severity`: `PRIORITY` 0–7 by its syslog name (`FerryWire.SyslogNames`, as the syslog input stores it).
/// - `journald`: every other field under its own name; trusted fields keep their leading underscore
///   (`"_HOSTNAME"`, `"_BOOT_ID"`). A field that occurs more than once in the entry (journald allows it) is an
///   array of its values in the entry's order.
/// - Binary values: a value that is not valid UTF-8, or holds a NUL byte, is `{"base64":"…"}` (RFC 4648, with
///   padding). Other control characters (an ANSI colour escape, a carriage return) are text, escaped by
///   `JSONString`: JSON carries them losslessly, and the text stays searchable.
///
/// Nothing is lost and the top-level fields keep one JSON type: a mapped field whose value is binary (a
/// `MESSAGE` with invalid UTF-8) or that repeats is written at the top level as text (invalid sequences as
/// U+FFFD) and, exactly, under `journald` as well; a `_PID` that is not a number or a `PRIORITY` outside 0–7
/// stays under `journald` only.
///
/// Reused across entries: `reset()`, `add(field:)` for each field, then `finish(realtime:into:)`.
struct JournalEventEncoder {
    /// A field's bytes inside `arena`: `NAME=value`.
    private struct Field {
        var start: Int
        var nameLength: Int
        var end: Int
        /// Index of the first field of the entry with the same name (itself when it is the first).
        var first: Int
        /// Occurrences of the name in the entry (kept up to date on the first only).
        var count: Int
    }

    private enum Mapped: Int, CaseIterable {
        case message, unit, identifier, pid, priority
    }

    private var arena: [UInt8] = []
    private var fields: [Field] = []
    /// Index into `fields` of the first occurrence of each mapped name, or -1.
    private var mapped: [Int] = Array(repeating: -1, count: Mapped.allCases.count)
    private var scratch: [UInt8] = []

    /// Binary values written so far (not reset per entry): the input's counter.
    private(set) var binaryValues = 0
    /// Fields without `=` (a damaged journal) skipped so far.
    private(set) var malformedFields = 0

    init() {
        arena.reserveCapacity(4096)
        fields.reserveCapacity(64)
    }

    /// Starts a new entry.
    mutating func reset() {
        arena.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        for index in mapped.indices { mapped[index] = -1 }
    }

    /// Adds one field as sd-journal gives it, `NAME=value` (the value may hold any bytes). Copied: sd-journal's
    /// pointer is valid only until its next call.
    mutating func add(field data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, let found = memchr(base, Int32(UInt8(ascii: "=")), data.count),
              base.distance(to: UnsafeRawPointer(found)) > 0 else {
            malformedFields += 1
            return
        }
        let equals = base.distance(to: UnsafeRawPointer(found))
        let start = arena.count
        arena.append(contentsOf: data)
        let index = fields.count
        let (first, which) = arena.withUnsafeBytes { bytes -> (Int, Mapped?) in
            let name = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + equals)])
            for k in 0..<index where fields[k].first == k && fields[k].nameLength == equals
                && memcmp(bytes.baseAddress! + fields[k].start, name.baseAddress!, equals) == 0 {
                return (k, nil)
            }
            return (index, Self.mappedName(name))
        }
        if let which { mapped[which.rawValue] = index }
        fields.append(Field(start: start, nameLength: equals, end: arena.count, first: first, count: 1))
        if first != index { fields[first].count += 1 }
    }

    /// Appends the event of the fields added since `reset()`; `realtime` is the entry's realtime timestamp in
    /// microseconds since the epoch (nil leaves `@timestamp` out, for the input seam to stamp the read time).
    mutating func finish(realtime: UInt64?, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var needsComma = false
        if let realtime {
            out.append(contentsOf: Self.timestampKey)
            let micros = Int64(clamping: realtime)
            Timestamp.appendRFC3339(seconds: micros / 1_000_000, fraction: Int(micros % 1_000_000), digits: 6, to: &out)
            out.append(UInt8(ascii: "\""))
            needsComma = true
        }
        // Which fields are written at the top level and need no copy under `journald`.
        var consumed: UInt8 = 0  // bit per `Mapped` case
        for which in Mapped.allCases {
            let index = mapped[which.rawValue]
            guard index >= 0 else { continue }
            let field = fields[index]
            let exact = withValue(of: field) { value -> Bool in
                switch which {
                case .message, .unit, .identifier:
                    if needsComma { out.append(UInt8(ascii: ",")) }
                    out.append(contentsOf: Self.keys[which.rawValue])
                    let isText = appendString(value, to: &out)
                    needsComma = true
                    return isText
                case .pid:
                    guard value.count > 0, value.count <= 10, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
                    if needsComma { out.append(UInt8(ascii: ",")) }
                    out.append(contentsOf: Self.keys[which.rawValue])
                    out.append(contentsOf: value)
                    needsComma = true
                    return true
                case .priority:
                    guard value.count == 1, value[0] >= 0x30, value[0] <= 0x37 else { return false }
                    if needsComma { out.append(UInt8(ascii: ",")) }
                    out.append(contentsOf: Self.keys[which.rawValue])
                    out.append(contentsOf: Self.severities[Int(value[0] - 0x30)])
                    needsComma = true
                    return true
                }
            }
            if exact && field.count == 1 { consumed |= 1 << which.rawValue }
        }

        var openedJournald = false
        for index in fields.indices where fields[index].first == index {
            if let which = mappedIndex(of: index), consumed & (1 << which) != 0 { continue }
            if openedJournald {
                out.append(UInt8(ascii: ","))
            } else {
                if needsComma { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: Self.journaldKey)
                openedJournald = true
            }
            let field = fields[index]
            out.append(UInt8(ascii: "\""))
            arena.withUnsafeBytes { bytes in
                let name = UnsafeRawBufferPointer(rebasing: bytes[field.start..<(field.start + field.nameLength)])
                // journald's names are A-Z, 0-9 and _; a damaged file's may be anything, and a key must be text.
                switch Self.classify(name) {
                case .plain: out.append(contentsOf: name)
                case .text: JSONString.appendEscaped(name, to: &out)
                case .binary: JSONString.appendEscaped(String(decoding: name, as: UTF8.self).utf8, to: &out)
                }
            }
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
            if field.count == 1 {
                appendValue(of: field, to: &out)
            } else {
                out.append(UInt8(ascii: "["))
                appendValue(of: field, to: &out)
                for later in (index + 1)..<fields.count where fields[later].first == index {
                    out.append(UInt8(ascii: ","))
                    appendValue(of: fields[later], to: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
        }
        if openedJournald { out.append(UInt8(ascii: "}")) }
        out.append(UInt8(ascii: "}"))
    }

    // MARK: - Values

    /// `"emerg"` … `"debug"`, quotes included, by severity.
    private static let severities = SyslogNames.severities.map { Array("\"\($0)\"".utf8) }
    private static let timestampKey = Array(#""@timestamp":""#.utf8)
    private static let journaldKey = Array(#""journald":{"#.utf8)
    private static let base64Open = Array(#"{"base64":""#.utf8)
    private static let keys: [[UInt8]] = [
        Array(#""message":"#.utf8), Array(#""unit":"#.utf8), Array(#""identifier":"#.utf8),
        Array(#""pid":"#.utf8), Array(#""severity":"#.utf8),
    ]

    private static let mappedNames: [(Mapped, [UInt8])] = [
        (.pid, Array("_PID".utf8)), (.message, Array("MESSAGE".utf8)), (.priority, Array("PRIORITY".utf8)),
        (.unit, Array("_SYSTEMD_UNIT".utf8)), (.identifier, Array("SYSLOG_IDENTIFIER".utf8)),
    ]

    private static func mappedName(_ name: UnsafeRawBufferPointer) -> Mapped? {
        for (which, bytes) in mappedNames where bytes.count == name.count {
            if bytes.withUnsafeBytes({ memcmp($0.baseAddress!, name.baseAddress!, name.count) }) == 0 { return which }
        }
        return nil
    }

    private func mappedIndex(of index: Int) -> Int? {
        for which in mapped.indices where mapped[which] == index { return which }
        return nil
    }

    private func withValue<R>(of field: Field, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        arena.withUnsafeBytes { bytes in
            body(UnsafeRawBufferPointer(rebasing: bytes[(field.start + field.nameLength + 1)..<field.end]))
        }
    }

    /// A value under `journald`: a JSON string, or `{"base64":"…"}` when it is binary.
    private mutating func appendValue(of field: Field, to out: inout [UInt8]) {
        let binary = withValue(of: field) { value -> Bool in
            switch Self.classify(value) {
            case .plain:
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: value)
                out.append(UInt8(ascii: "\""))
                return false
            case .text:
                out.append(UInt8(ascii: "\""))
                JSONString.appendEscaped(value, to: &out)
                out.append(UInt8(ascii: "\""))
                return false
            case .binary:
                out.append(contentsOf: Self.base64Open)
                Base64.append(value, to: &out)
                out.append(UInt8(ascii: "\""))
                out.append(UInt8(ascii: "}"))
                return true
            }
        }
        if binary { binaryValues += 1 }
    }

    /// A value as a JSON string; binary values as text with U+FFFD for invalid sequences. Returns whether the
    /// value was text (written exactly).
    private func appendString(_ value: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Bool {
        out.append(UInt8(ascii: "\""))
        defer { out.append(UInt8(ascii: "\"")) }
        switch Self.classify(value) {
        case .plain:
            out.append(contentsOf: value)
            return true
        case .text:
            JSONString.appendEscaped(value, to: &out)
            return true
        case .binary:
            JSONString.appendEscaped(String(decoding: value, as: UTF8.self).utf8, to: &out)
            return false
        }
    }

    enum Kind { case plain, text, binary }

    /// `plain`: printable ASCII without `"` or `\` (copied as it is); `text`: valid UTF-8 without NUL (escaped);
    /// `binary`: anything else.
    static func classify(_ value: UnsafeRawBufferPointer) -> Kind {
        guard let base = value.baseAddress else { return .plain }
        var special = false
        var nonASCII = false
        for index in 0..<value.count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte >= 0x80 {
                nonASCII = true
            } else if byte < 0x20 || byte == 0x22 || byte == 0x5C {
                if byte == 0 { return .binary }
                special = true
            }
        }
        if nonASCII { return UTF8Validation.firstInvalidOffset(value) == nil ? .text : .binary }
        return special ? .text : .plain
    }
}
