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

    /// The same as `appendEscaped(_:to:)` for bytes in memory, for the inputs that build events from raw
    /// bytes (the syslog and RELP inputs): bytes are read eight at a time and the first that needs an escape
    /// is found from the word's mask, text without escapes is appended at once, and text with escapes (a
    /// message that quotes something) is written into scratch memory with plain stores and appended once,
    /// instead of one array append per run and per escape.
    public static func appendEscaped(_ text: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        guard let base = text.baseAddress else { return }
        let count = text.count
        var index = firstToEscape(text, from: 0)
        if index == count {
            out.append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: count))
            return
        }
        // At most six bytes out per byte in (`\u00XX`).
        let bound = count * 6
        guard bound <= scratchLimit else {
            appendEscapedInRuns(text, from: index, to: &out)
            return
        }
        withUnsafeTemporaryAllocation(byteCount: bound, alignment: 1) { scratch in
            let target = scratch.baseAddress!
            target.copyMemory(from: base, byteCount: index)
            var written = index
            while index < count {
                if index + 8 <= count {
                    // The whole word is stored; only its plain bytes count. Room: written <= 6 * index and
                    // index + 8 <= count, so written + 8 < bound.
                    let word = text.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                    target.storeBytes(of: word, toByteOffset: written, as: UInt64.self)
                    let mask = ASCIIWord.bytesToEscape(UInt64(littleEndian: word))
                    if mask == 0 {
                        written += 8
                        index += 8
                        continue
                    }
                    let plain = mask.trailingZeroBitCount >> 3
                    written += plain
                    index += plain
                }
                let byte = text[index]
                index += 1
                if needsEscape(byte) {
                    written += writeEscape(of: byte, to: target + written)
                } else {
                    target.storeBytes(of: byte, toByteOffset: written, as: UInt8.self)
                    written += 1
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(start: target.assumingMemoryBound(to: UInt8.self), count: written))
        }
    }

    /// Text longer than this (times six) is escaped in runs appended one by one, without scratch memory.
    package static let scratchLimit = 64 << 10

    /// The offset of the first byte of `text` at or after `start` that needs an escape, or `text.count`.
    @inline(__always)
    private static func firstToEscape(_ text: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = ASCIIWord.firstMarked(in: text, from: start, ASCIIWord.bytesToEscape)
        while index < text.count, !needsEscape(text[index]) { index += 1 }
        return index
    }

    /// `appendEscaped` for long text: runs without escapes appended at once, each escape on its own.
    private static func appendEscapedInRuns(_ text: UnsafeRawBufferPointer, from first: Int, to out: inout [UInt8]) {
        let bytes = text.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var start = 0
        var index = first
        let count = text.count
        while index < count {
            if start < index { out.append(contentsOf: UnsafeBufferPointer(start: bytes + start, count: index - start)) }
            appendEscape(of: bytes[index], to: &out)
            start = index + 1
            index = firstToEscape(text, from: start)
        }
        if start < count { out.append(contentsOf: UnsafeBufferPointer(start: bytes + start, count: count - start)) }
    }

    /// Writes the escape of `byte` at `target`; returns its length (2 or 6).
    @inline(__always)
    private static func writeEscape(of byte: UInt8, to target: UnsafeMutableRawPointer) -> Int {
        target.storeBytes(of: 0x5C, as: UInt8.self)
        let short: UInt8
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): short = byte
        case 0x0A: short = UInt8(ascii: "n")
        case 0x0D: short = UInt8(ascii: "r")
        case 0x09: short = UInt8(ascii: "t")
        default:
            target.storeBytes(of: UInt8(ascii: "u"), toByteOffset: 1, as: UInt8.self)
            target.storeBytes(of: 0x30, toByteOffset: 2, as: UInt8.self)
            target.storeBytes(of: 0x30, toByteOffset: 3, as: UInt8.self)
            target.storeBytes(of: hexDigit(byte >> 4), toByteOffset: 4, as: UInt8.self)
            target.storeBytes(of: hexDigit(byte & 0xF), toByteOffset: 5, as: UInt8.self)
            return 6
        }
        target.storeBytes(of: short, toByteOffset: 1, as: UInt8.self)
        return 2
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// Appends the escape of `byte`, as `writeEscape` writes it (the one table of escapes).
    @inline(never)
    private static func appendEscape(of byte: UInt8, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: 6, alignment: 1) { scratch in
            let count = writeEscape(of: byte, to: scratch.baseAddress!)
            out.append(contentsOf: UnsafeBufferPointer(start: scratch.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count))
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

/// Tests of eight bytes at once. Whether a word holds such a byte does not depend on the byte order;
/// which byte comes first in memory is read from the word loaded as little-endian (`bytesToEscape`).
enum ASCIIWord {
    static let highBits: UInt64 = 0x8080_8080_8080_8080
    private static let ones: UInt64 = 0x0101_0101_0101_0101

    /// The bytes of `word` that need a JSON escape (below 0x20, a quote or a backslash), as their high
    /// bits. The lowest marked byte is exact; bytes above it may be marked falsely (a borrow carries up),
    /// so read as a little-endian number (`UInt64(littleEndian:)` of the loaded word) the first byte in
    /// memory that needs an escape is `trailingZeroBitCount / 8`, and 0 means none does.
    @inline(__always)
    static func bytesToEscape(_ word: UInt64) -> UInt64 {
        // A byte below 0x20 borrows when 0x20 is subtracted, and has its high bit clear before
        // (Bit Twiddling Hacks' "hasless", exact for limits up to 128); a quote or a backslash is a zero
        // byte after the XOR ("haszero").
        let control = (word &- ones &* 0x20) & ~word
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        return (control | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)) & highBits
    }

    /// Skips `bytes` from `start` eight at a time while `marks` marks no byte of a word (a mask of high
    /// bits whose lowest mark is exact, given the word loaded as little-endian): the offset of the first
    /// marked byte, or of the first of the last fewer than eight bytes, which the caller tests one by one.
    @inline(__always)
    static func firstMarked(in bytes: UnsafeRawBufferPointer, from start: Int, _ marks: (UInt64) -> UInt64) -> Int {
        var index = start
        while index + 8 <= bytes.count {
            let mask = marks(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
            if mask != 0 { return index + mask.trailingZeroBitCount >> 3 }
            index += 8
        }
        return index
    }
}
