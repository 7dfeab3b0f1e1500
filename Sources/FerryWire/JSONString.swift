/// JSON string escaping, in one place: error bodies, JSON log lines, `ferry-tools --json` output, and
/// the `{"message":...}` events made from lines that are not JSON.
public enum JSONString {
    /// `text` as a JSON string literal, quotes included.
    public static func literal(_ text: String) -> String {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        out.reserveCapacity(text.utf8.count + 2)
        appendEscaped(text.utf8, to: &out)
        out.append(UInt8(ascii: "\""))
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `text` (valid UTF-8) as the inside of a JSON string: quote, backslash and control
    /// characters escaped, everything else as it is.
    public static func appendEscaped(_ text: some Sequence<UInt8>, to out: inout [UInt8]) {
        for byte in text {
            if needsEscape(byte) { appendEscape(of: byte, to: &out) } else { out.append(byte) }
        }
    }

    /// The same as `appendEscaped(_:to:)` for bytes in memory: runs that need no escape are copied at once.
    /// This is the hot path of inputs that build events from raw bytes (the syslog and RELP inputs).
    public static func appendEscaped(_ text: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var start = 0
        var index = 0
        let count = text.count
        while index < count {
            let byte = text[index]
            if needsEscape(byte) {
                if start < index { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: text[start..<index])) }
                appendEscape(of: byte, to: &out)
                start = index + 1
            }
            index += 1
        }
        if start < count { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: text[start..<count])) }
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private static func appendEscape(of byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): out += [0x5C, 0x22]
        case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
        case 0x0A: out += [0x5C, UInt8(ascii: "n")]
        case 0x0D: out += [0x5C, UInt8(ascii: "r")]
        case 0x09: out += [0x5C, UInt8(ascii: "t")]
        default: out += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigit(byte >> 4), hexDigit(byte & 0xF)]
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

extension StringProtocol {
    /// The text without the white space (spaces, tabs, line ends) at either end: header values, items of
    /// a comma-separated list. Foundation's `trimmingCharacters(in:)` would bring full Foundation.
    package func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
