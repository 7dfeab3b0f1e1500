import FerryWire
import Testing

@Suite struct JSONStringTests {
    /// `text` escaped by the escaper for bytes in memory (the one under test), appended to `start`.
    func viaBuffer(_ text: [UInt8], after start: [UInt8] = []) -> [UInt8] {
        var out = start
        text.withUnsafeBytes { JSONString.appendEscaped($0, to: &out) }
        return out
    }

    /// `text` escaped by the escaper for any sequence, one byte at a time (the reference), appended to `start`.
    func viaSequence(_ text: [UInt8], after start: [UInt8] = []) -> [UInt8] {
        var out = start
        JSONString.appendEscaped(text.lazy.map { $0 }, to: &out)
        return out
    }

    @Test func theBufferEscaperWritesWhatTheSequenceEscaperWrites() {
        var samples: [[UInt8]] = [[], Array("plain".utf8), Array("\"quoted\" \\ back\tslash\r\n".utf8), Array("é ✓ \u{1B}[0m".utf8)]
        samples += (0...255).map { [UInt8($0)] }
        samples.append((0...255).map { UInt8($0) } + Array("tail".utf8))
        for sample in samples {
            #expect(viaBuffer(sample, after: [0x7B]) == viaSequence(sample, after: [0x7B]), "\(sample)")
        }
    }

    /// The buffer escaper reads eight bytes at a time: every byte value, at every position of a word and of
    /// the tail, among plain ASCII and among bytes of 0x80 and above, comes out as the sequence escaper has it.
    @Test func everyByteAtEveryPositionOfAWordIsEscapedAsByTheSequenceEscaper() {
        for filler: UInt8 in [UInt8(ascii: "a"), 0xC3, 0xFF, 0x21, 0x5D, 0x20] {
            for length in [8, 16, 19] {
                for position in 0..<length {
                    for value in 0...255 {
                        var sample = [UInt8](repeating: filler, count: length)
                        sample[position] = UInt8(value)
                        let (fast, reference) = (viaBuffer(sample), viaSequence(sample))
                        if fast != reference {
                            Issue.record("filler \(filler), byte \(value) at \(position) of \(length): \(fast) != \(reference)")
                            return
                        }
                    }
                }
            }
        }
    }

    /// The escaper jumps to the first byte of a word that needs an escape, from a mask whose bytes above a
    /// true one can be marked falsely (a borrow carries up: 0x20 after a control byte, 0x23 after a quote,
    /// 0x5D after a backslash): every pair of such bytes, at any two positions, comes out right, in short
    /// text (scratch memory) and at the end of text too long for it (runs, which escape without a re-test).
    @Test func twoBytesOfAWordNextToAnEscapeAreEscapedAsByTheSequenceEscaper() {
        let values: [UInt8] = [0x00, 0x01, 0x02, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xC3, 0xFF]
        // A word-aligned prefix that, with the 16 bytes after it, puts the text past the scratch bound.
        let long = JSONString.scratchLimit / 6 / 8 * 8
        let cases = [(0, 8), (0, 13), (0, 16), (long, 16)]
        for (prefix, length) in cases {
            for first in 0..<length {
                for second in (first + 1)..<length {
                    for a in values {
                        for b in values {
                            var window = [UInt8](repeating: UInt8(ascii: "q"), count: length)
                            window[first] = a
                            window[second] = b
                            let plain = [UInt8](repeating: UInt8(ascii: "q"), count: prefix)
                            // The plain prefix comes out as it is: only the window goes through the (slow) sequence escaper.
                            let (fast, reference) = (viaBuffer(plain + window), viaSequence(window, after: plain))
                            if fast != reference {
                                Issue.record("\(a) at \(first), \(b) at \(second) of \(length) after \(prefix): \(fast.suffix(40)) != \(reference.suffix(40))")
                                return
                            }
                        }
                    }
                }
            }
        }
    }

    /// UTF-8 validation skips ASCII eight bytes at a time: the offset of a bad byte is still exact.
    @Test func utf8ValidationNamesTheOffsetOfABadByteAfterAnyASCIIRun() {
        for length in 1...24 {
            for position in 0..<length {
                for bad: [UInt8] in [[0xFF], [0xC3], [0xE2, 0x28], [0x80]] {
                    var sample = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                    sample.replaceSubrange(position..<min(length, position + bad.count), with: bad.prefix(length - position))
                    let offset = sample.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) }
                    #expect(offset == position, "\(bad) at \(position) of \(length)")
                }
            }
            let valid = Array(String(repeating: "é✓a", count: length).utf8)
            #expect(valid.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } == nil)
        }
    }

    /// Text with escapes goes through scratch memory, and text longer than the scratch bound through runs:
    /// both write what the sequence escaper writes, escapes next to each other and at either end included.
    @Test func longAndDenselyEscapedTextIsEscapedAsByTheSequenceEscaper() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = Array("abc \"\\\n\t\u{01}\u{1F}".utf8) + [0xC3, 0xA9, 0x7F]
        for length in [1, 2, 9, 100, 4_000, JSONString.scratchLimit / 6, JSONString.scratchLimit / 6 + 1, 20_000] {
            for density in [1, 4, 64] {
                let sample = (0..<length).map { index -> UInt8 in
                    index % density == 0 ? alphabet.randomElement(using: &generator)! : UInt8(ascii: "x")
                }
                #expect(viaBuffer(sample, after: [0x7B]) == viaSequence(sample, after: [0x7B]), "length \(length), one special in \(density)")
            }
        }
    }
}
