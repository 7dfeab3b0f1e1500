import FerryWire
import Testing

@Suite struct JSONStringTests {
    @Test func theBufferEscaperWritesWhatTheSequenceEscaperWrites() {
        var samples: [[UInt8]] = [[], Array("plain".utf8), Array("\"quoted\" \\ back\tslash\r\n".utf8), Array("é ✓ \u{1B}[0m".utf8)]
        samples += (0...255).map { [UInt8($0)] }
        samples.append((0...255).map { UInt8($0) } + Array("tail".utf8))
        for sample in samples {
            var viaSequence: [UInt8] = [0x7B]
            JSONString.appendEscaped(sample.lazy.map { $0 }, to: &viaSequence)
            var viaBuffer: [UInt8] = [0x7B]
            sample.withUnsafeBytes { JSONString.appendEscaped($0, to: &viaBuffer) }
            #expect(viaBuffer == viaSequence, "\(sample)")
        }
    }
}
