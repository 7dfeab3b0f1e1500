#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON syntax error: where (byte offset in the input) and what.
public struct JSONSyntaxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Byte offset of the problem in the validated input.
    public let offset: Int
    public let reason: String

    public var description: String { "\(reason) at byte \(offset)" }
}

/// Strict RFC 8259 validation of JSON without building values, and splitting of a JSON body into the
/// byte ranges of its objects.
///
/// Written by hand rather than through a JSON library for two reasons: events are stored and forwarded
/// byte for byte as the client sent them (a parse and re-serialisation would change number formats and
/// key order), and validating without allocating is several times faster than decoding into values.
/// Strings are checked for valid UTF-8 (no overlong forms, no surrogates) and valid escapes; nesting
/// is limited to `maxDepth` so that hostile input cannot exhaust the stack.
public enum JSONValidator {
    public static let maxDepth = 256

    /// Checks that `bytes` hold exactly one JSON object, with optional whitespace around it.
    public static func validateObject(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        _ = try validateObject(bytes, wanted: nil)
    }

    /// Checks that `bytes` hold exactly one JSON object, as `validateObject(_:)` does, and returns which of
    /// `keys` are among its top-level keys (bit `i` for `keys.keys[i]`). Costs one comparison per top-level
    /// key beyond the validation itself: how the ingest learns whether an event has its `@timestamp`.
    public static func validateObject(_ bytes: UnsafeRawBufferPointer, finding keys: TopLevelKeys) throws(JSONSyntaxError) -> UInt64 {
        try validateObject(bytes, wanted: keys)
    }

    private static func validateObject(_ bytes: UnsafeRawBufferPointer, wanted: TopLevelKeys?) throws(JSONSyntaxError) -> UInt64 {
        var scanner = Scanner(bytes: bytes)
        scanner.wanted = wanted
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{") else {
            throw scanner.error(scanner.atEnd ? "empty line where a JSON object was expected" : "expected a JSON object")
        }
        try scanner.value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw scanner.error("unexpected data after the JSON object") }
        return scanner.found
    }

    /// Checks that `bytes` hold exactly one JSON value of any kind (RFC 8259's JSON text: an object, an
    /// array, a string, a number, `true`, `false` or `null`), with optional whitespace around it, by the
    /// same rules as `validateObject(_:)`. Events must be objects; this is for JSON that is not an event,
    /// and lets the scanner be checked against corpora of any JSON (JSONTestSuite).
    public static func validateValue(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard !scanner.atEnd else { throw scanner.error("empty input where a JSON value was expected") }
        try scanner.value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw scanner.error("unexpected data after the JSON value") }
    }

    /// Splits a body holding one JSON object or an array of JSON objects into the byte ranges of the objects.
    public static func objects(in bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> [Range<Int>] {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        var ranges: [Range<Int>] = []
        switch scanner.peek {
        case UInt8(ascii: "{"):
            let start = scanner.index
            try scanner.value(depth: 0)
            ranges.append(start..<scanner.index)
        case UInt8(ascii: "["):
            scanner.index += 1
            scanner.skipWhitespace()
            if scanner.peek == UInt8(ascii: "]") {
                scanner.index += 1
            } else {
                while true {
                    scanner.skipWhitespace()
                    guard scanner.peek == UInt8(ascii: "{") else { throw scanner.error("expected a JSON object as array element") }
                    let start = scanner.index
                    try scanner.value(depth: 1)
                    ranges.append(start..<scanner.index)
                    scanner.skipWhitespace()
                    if scanner.peek == UInt8(ascii: ",") { scanner.index += 1; continue }
                    if scanner.peek == UInt8(ascii: "]") { scanner.index += 1; break }
                    throw scanner.error("expected ',' or ']' in the array")
                }
            }
        default:
            throw scanner.error(scanner.atEnd ? "empty JSON body" : "expected a JSON object or an array of objects")
        }
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw scanner.error("unexpected data after the JSON value") }
        return ranges
    }

    /// Calls `body` with `object` (valid JSON) on one line: as it is, or compacted when it spans lines
    /// (a pretty-printed object), since a stored event is one NDJSON line. The one folding of events that
    /// arrive whole rather than as lines: JSON bodies and Kafka messages.
    public static func withSingleLine<R>(_ object: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let base = object.baseAddress, memchr(base, 0x0A, object.count) != nil || memchr(base, 0x0D, object.count) != nil else {
            return try body(object)
        }
        return try compact(object).withUnsafeBytes { try body($0) }
    }

    /// Removes whitespace outside strings from valid JSON, so that a pretty-printed object fits on one line.
    public static func compact(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                out.append(byte)
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
                out.append(byte)
            } else if byte != 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D {
                out.append(byte)
            }
        }
        return out
    }

    struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        /// Top-level keys to report in `found` (`validateObject(_:finding:)`).
        var wanted: TopLevelKeys?
        var found: UInt64 = 0

        var atEnd: Bool { index >= bytes.count }
        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        func error(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: index, reason: reason) }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(JSONSyntaxError) {
            guard depth < JSONValidator.maxDepth else { throw error("JSON nested deeper than \(JSONValidator.maxDepth) levels") }
            guard let byte = peek else { throw error("unexpected end of JSON") }
            switch byte {
            case UInt8(ascii: "{"): try object(depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw error("unexpected character '\(printable(byte))'")
            }
        }

        mutating func object(depth: Int) throws(JSONSyntaxError) {
            index += 1  // {
            skipWhitespace()
            if peek == UInt8(ascii: "}") { index += 1; return }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw error(atEnd ? "unexpected end of JSON inside an object" : "expected a string key") }
                let keyStart = index + 1
                try string()
                if depth == 0, let wanted {
                    found |= wanted.match(UnsafeRawBufferPointer(rebasing: bytes[keyStart..<(index - 1)]))
                }
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { throw error("expected ':' after the key") }
                index += 1
                skipWhitespace()
                try value(depth: depth + 1)
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return
                case nil: throw error("unexpected end of JSON inside an object")
                default: throw error("expected ',' or '}' in the object")
                }
            }
        }

        mutating func array(depth: Int) throws(JSONSyntaxError) {
            index += 1  // [
            skipWhitespace()
            if peek == UInt8(ascii: "]") { index += 1; return }
            while true {
                skipWhitespace()
                try value(depth: depth + 1)
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): index += 1; return
                case nil: throw error("unexpected end of JSON inside an array")
                default: throw error("expected ',' or ']' in the array")
                }
            }
        }

        mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw error("unexpected end of JSON") }
            for k in 0..<count where bytes[index + k] != word.utf8Start[k] {
                throw error("invalid literal, expected \(word)")
            }
            index += count
        }

        mutating func number() throws(JSONSyntaxError) {
            if peek == UInt8(ascii: "-") { index += 1 }
            guard let first = peek, isDigit(first) else { throw error("invalid number") }
            index += 1
            if first != UInt8(ascii: "0") { while let d = peek, isDigit(d) { index += 1 } }
            if peek == UInt8(ascii: ".") {
                index += 1
                guard let d = peek, isDigit(d) else { throw error("invalid number: digits expected after '.'") }
                while let d = peek, isDigit(d) { index += 1 }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard let d = peek, isDigit(d) else { throw error("invalid number: digits expected in the exponent") }
                while let d = peek, isDigit(d) { index += 1 }
            }
        }

        mutating func string() throws(JSONSyntaxError) {
            index += 1  // opening quote
            while index < bytes.count {
                // Eight plain bytes (ASCII, no quote, backslash or control byte) at a time, then straight to
                // the first byte that is not plain: the lowest mark of each mask is exact (`bytesToEscape`),
                // so the lowest of both is too. Without the jump, each plain byte before a string's closing
                // quote cost a word test of its own.
                index = ASCIIWord.firstMarked(in: bytes, from: index) { ($0 & ASCIIWord.highBits) | ASCIIWord.bytesToEscape($0) }
                guard index < bytes.count else { break }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escape = peek else { throw error("unexpected end of JSON in a string escape") }
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        guard index + 4 <= bytes.count else { throw error("unexpected end of JSON in a \\u escape") }
                        for _ in 0..<4 {
                            guard isHexDigit(bytes[index]) else { throw error("invalid \\u escape") }
                            index += 1
                        }
                    default:
                        throw error("invalid escape '\\\(printable(escape))' in a string")
                    }
                case 0x00..<0x20:
                    throw error("control character 0x\(String(byte, radix: 16)) in a string (must be escaped)")
                case 0x20..<0x80:
                    index += 1
                default:
                    try utf8Sequence()
                }
            }
            throw error("unterminated string")
        }

        /// One multi-byte UTF-8 sequence, per RFC 3629 (no overlong forms, no surrogates, ≤ U+10FFFF).
        mutating func utf8Sequence() throws(JSONSyntaxError) {
            let lead = bytes[index]
            let length: Int
            var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; upper = 0x9F
            case 0xF0: length = 4; lower = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; upper = 0x8F
            default: throw error("invalid UTF-8 byte 0x\(String(lead, radix: 16))")
            }
            guard index + length <= bytes.count else { throw error("truncated UTF-8 sequence") }
            let second = bytes[index + 1]
            guard second >= lower && second <= upper else { throw error("invalid UTF-8 sequence") }
            for k in 2..<length where bytes[index + k] & 0xC0 != 0x80 {
                throw error("invalid UTF-8 sequence")
            }
            index += length
        }
    }
}

@inline(__always) private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
@inline(__always) private func isHexDigit(_ b: UInt8) -> Bool {
    isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "F"))
}
private func printable(_ b: UInt8) -> String { b >= 0x20 && b < 0x7F ? String(UnicodeScalar(b)) : "0x" + String(b, radix: 16) }

/// UTF-8 validation for text outside JSON (text/plain lines), with the same rules as JSON strings.
public enum UTF8Validation {
    /// Offset of the first invalid byte, or nil if `bytes` are valid UTF-8.
    public static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var scanner = JSONValidator.Scanner(bytes: bytes)
        while scanner.index < bytes.count {
            // Eight ASCII bytes at a time, then straight to the first byte that is not: text is mostly
            // ASCII (a syslog message, a log line).
            scanner.index = ASCIIWord.firstMarked(in: bytes, from: scanner.index) { $0 & ASCIIWord.highBits }
            guard scanner.index < bytes.count else { break }
            if bytes[scanner.index] < 0x80 { scanner.index += 1; continue }
            do { try scanner.utf8Sequence() } catch { return error.offset }
        }
        return nil
    }
}
