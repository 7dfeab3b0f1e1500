import FerryWire
import Testing

@Suite struct JSONValidatorTests {
    func valid(_ text: String) -> Bool {
        (try? Array(text.utf8).withUnsafeBytes { try JSONValidator.validateObject($0) }) != nil
    }

    @Test func acceptsObjectsOfEveryKind() {
        for text in [#"{}"#, #" {"a":1} "#, #"{"a":[1,2.5,-3e10,0,0.1E+2,true,false,null],"b":{"c":"d\n\u00e9\"\\\/"}}"#,
                     #"{"é":"日本語 😀"}"#, #"{"a":-0}"#] {
            #expect(valid(text), "refused \(text)")
        }
    }

    @Test func refusesWhatIsNotOneObject() {
        for text in ["", " ", "[]", "1", #""s""#, "{", "}", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, #"{a:1}"#, #"{"a":01}"#,
                     #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":tru}"#, #"{"a":"\x"}"#, #"{"a":"\u12"}"#, "{\"a\":\"\t\"}",
                     #"{"a":1} {"b":2}"#, #"{"a":1}x"#, #"{"a":NaN}"#, #"{'a':1}"#] {
            #expect(!valid(text), "accepted \(text)")
        }
    }

    @Test func refusesInvalidUTF8InStrings() {
        let cases: [[UInt8]] = [
            [0xC0, 0xAF],  // overlong
            [0xED, 0xA0, 0x80],  // surrogate
            [0xF4, 0x90, 0x80, 0x80],  // beyond U+10FFFF
            [0xE2, 0x82],  // truncated
            [0xFF],
        ]
        for bad in cases {
            let bytes = Array(#"{"a":""#.utf8) + bad + Array(#""}"#.utf8)
            #expect((try? bytes.withUnsafeBytes { try JSONValidator.validateObject($0) }) == nil, "accepted \(bad)")
            #expect(bytes.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } == 6)
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = "{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        #expect(!valid(deep))
    }

    @Test func splitsArraysIntoObjectsAndCompactsPrettyOnes() throws {
        let body = "[\n  {\"a\": 1,\n   \"b\": \"x y\"},\n  {\"c\": [1, 2]}\n]"
        let bytes = Array(body.utf8)
        let ranges = try bytes.withUnsafeBytes { try JSONValidator.objects(in: $0) }
        #expect(ranges.count == 2)
        let first = bytes.withUnsafeBytes { JSONValidator.compact(UnsafeRawBufferPointer(rebasing: $0[ranges[0]])) }
        #expect(String(decoding: first, as: UTF8.self) == #"{"a":1,"b":"x y"}"#)
        #expect(throws: JSONSyntaxError.self) { try Array("[{},1]".utf8).withUnsafeBytes { try JSONValidator.objects(in: $0) } }
    }

    /// Strings are scanned eight plain bytes at a time: a byte that ends or breaks the string, at any
    /// position of a word or of the tail, is still seen at its own offset.
    @Test func everySpecialByteAtEveryPositionOfAStringIsSeenWhereItIs() throws {
        let prefix = Array(#"{"k":""#.utf8)
        for length in [1, 7, 8, 9, 16, 23] {
            for position in 0..<length {
                func validate(_ special: [UInt8]) -> Result<Void, JSONSyntaxError> {
                    var body = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    body.replaceSubrange(position..<position + 1, with: special)
                    let text = prefix + body + Array(#""}"#.utf8)
                    return text.withUnsafeBytes { bytes in Result { () throws(JSONSyntaxError) in try JSONValidator.validateObject(bytes) } }
                }
                let at = prefix.count + position
                for control: UInt8 in [0x00, 0x01, 0x0A, 0x1F] {
                    guard case .failure(let error) = validate([control]) else { Issue.record("control 0x\(control) at \(position) of \(length) accepted"); return }
                    #expect(error.offset == at)
                }
                // A quote ends the string early: what follows is not a valid object.
                guard case .failure = validate([UInt8(ascii: "\"")]) else { Issue.record("early quote at \(position) of \(length) accepted"); return }
                guard case .failure(let bad) = validate([0xFF]) else { Issue.record("0xFF at \(position) of \(length) accepted"); return }
                #expect(bad.offset == at)
                guard case .failure = validate(Array(#"\q"#.utf8)) else { Issue.record("\\q at \(position) of \(length) accepted"); return }
                for fine in [Array(#"\""#.utf8), Array(#"\\"#.utf8), Array("é".utf8), [0x7F], [0x20]] {
                    guard case .success = validate(fine) else { Issue.record("\(fine) at \(position) of \(length) refused"); return }
                }
            }
        }
    }

    /// The string scan jumps to the lowest byte a word marks: with two special bytes in one word, the
    /// first is the one seen (a jump to another mark would skip a byte that breaks the string). Plain
    /// text of 8, 13 and 16 bytes, every pair of positions.
    @Test func ofTwoSpecialBytesInAStringTheFirstIsSeenFirst() throws {
        let prefix = Array(#"{"k":""#.utf8)
        for length in [8, 13, 16] {
            for first in 0..<length - 2 {
                for second in first + 2..<length {
                    func validate(_ a: [UInt8], _ b: [UInt8]) -> Result<Void, JSONSyntaxError> {
                        var body = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                        body.replaceSubrange(second..<second + 1, with: b)
                        body.replaceSubrange(first..<first + 1, with: a)
                        let text = prefix + body + Array(#""}"#.utf8)
                        return text.withUnsafeBytes { bytes in Result { () throws(JSONSyntaxError) in try JSONValidator.validateObject(bytes) } }
                    }
                    // A byte that breaks the string first: its offset, whatever comes after it.
                    for after: [UInt8] in [[0x01], [UInt8(ascii: "\"")], [0xFF], Array("é".utf8)] {
                        guard case .failure(let error) = validate([0x01], after) else { Issue.record("control at \(first) of \(length) accepted"); return }
                        #expect(error.offset == prefix.count + first, "control at \(first), \(after) at \(second) of \(length)")
                    }
                    // A byte that is fine first (an escape, a character past ASCII): the second one is still seen.
                    for before: [UInt8] in [Array("é".utf8), Array(#"\n"#.utf8), [0x7F]] {
                        let shift = before.count - 1
                        guard case .failure(let error) = validate(before, [0x01]) else { Issue.record("\(before) at \(first) of \(length) hid a control byte"); return }
                        #expect(error.offset == prefix.count + second + shift, "\(before) at \(first), control at \(second) of \(length)")
                    }
                }
            }
        }
    }

    /// UTF-8 validation jumps to the lowest byte past ASCII in a word: an invalid byte before a valid
    /// character in the same word is still the one named.
    @Test func utf8ValidationNamesTheFirstBadByteBeforeAGoodOne() {
        for length in [8, 13, 16] {
            for first in 0..<length - 2 {
                for second in first + 1..<length - 1 {
                    var sample = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                    sample.replaceSubrange(second..<second + 2, with: Array("é".utf8))
                    sample[first] = 0xFF
                    #expect(sample.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } == first, "0xFF at \(first), é at \(second) of \(length)")
                }
            }
        }
    }
}
