public import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Finds top-level fields of a JSON object event without parsing the whole of it: the message key of
/// the `kafka` output, and the keys an `EventStamp` must not add twice. Events in the queue were
/// validated when they came in; this scanner still checks every bound and returns nil on anything it
/// does not understand.
public enum TopLevelField {
    /// The value of field `name` in `event`: a string's content (escapes kept as written), or the text of
    /// a number, `true`, `false`; nil when the field is missing, `null`, an object or an array.
    public static func value(named name: [UInt8], in event: ByteBuffer) -> ByteBuffer? {
        let found: Range<Int>? = event.withUnsafeReadableBytes { range(named: name, in: $0) }
        return found.flatMap { event.getSlice(at: event.readerIndex + $0.lowerBound, length: $0.count) }
    }

    /// The bits of `keys` that are top-level keys of the object `b` (0 for what is not an object).
    public static func presence(of keys: TopLevelKeys, in b: UnsafeRawBufferPointer) -> UInt64 {
        var found: UInt64 = 0
        forEachMember(in: b) { key, _ in
            found |= keys.match(UnsafeRawBufferPointer(rebasing: b[key]))
            return true
        }
        return found
    }

    static func range(named name: [UInt8], in b: UnsafeRawBufferPointer) -> Range<Int>? {
        var result: Range<Int>?
        forEachMember(in: b) { key, value in
            guard key.count == name.count && name.withUnsafeBytes({ memcmp($0.baseAddress!, b.baseAddress! + key.lowerBound, key.count) == 0 }) else {
                return true
            }
            switch b[value.lowerBound] {
            case UInt8(ascii: "\""): result = (value.lowerBound + 1)..<(value.upperBound - 1)
            case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "n"): result = nil
            default: result = value
            }
            return false
        }
        return result
    }

    /// Calls `body` with the range of each top-level key (between its quotes) and of its value, in order,
    /// until it returns false or the object ends (or turns out not to be one).
    private static func forEachMember(in b: UnsafeRawBufferPointer, _ body: (Range<Int>, Range<Int>) -> Bool) {
        var i = skipSpace(b, 0)
        guard i < b.count, b[i] == UInt8(ascii: "{") else { return }
        i += 1
        while true {
            i = skipSpace(b, i)
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return }
            guard let keyEnd = stringEnd(b, i) else { return }
            let key = (i + 1)..<(keyEnd - 1)
            i = skipSpace(b, keyEnd)
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return }
            i = skipSpace(b, i + 1)
            guard i < b.count, let valueEnd = valueEnd(b, i) else { return }
            guard body(key, i..<valueEnd) else { return }
            i = skipSpace(b, valueEnd)
            guard i < b.count, b[i] == UInt8(ascii: ",") else { return }
            i += 1
        }
    }

    private static func skipSpace(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var i = start
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
        return i
    }

    /// Index after the closing quote of the string starting at `start`.
    private static func stringEnd(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        var i = start + 1
        while i < b.count {
            switch b[i] {
            case UInt8(ascii: "\\"): i += 2
            case UInt8(ascii: "\""): return i + 1
            default: i += 1
            }
        }
        return nil
    }

    /// Index after the value starting at `start`.
    private static func valueEnd(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        switch b[start] {
        case UInt8(ascii: "\""):
            return stringEnd(b, start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var i = start
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\""):
                    guard let end = stringEnd(b, i) else { return nil }
                    i = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default: break
                }
                i += 1
            }
            return nil
        default:
            var i = start
            while i < b.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 }
            return i > start ? i : nil
        }
    }
}
