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
}
