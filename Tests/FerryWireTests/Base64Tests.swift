import FerryWire
import Foundation
import Testing

@Suite struct Base64Tests {
    @Test func encodesTheRFC4648TestVectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
        }
    }

    @Test func agreesWithFoundationOnEveryByteAndLength() {
        for length in 0..<260 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ length) }
            #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        }
    }

    @Test func appendsAfterWhatIsThere() {
        var out = Array("x:".utf8)
        [UInt8]([0xFF, 0x00]).withUnsafeBytes { Base64.append($0, to: &out) }
        #expect(String(decoding: out, as: UTF8.self) == "x:/wA=")
    }
}
