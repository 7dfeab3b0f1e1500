import FerryWire
import Foundation
import NIOCore
import Testing

@Suite struct GzipTests {
    func gzip(_ text: String) -> [UInt8] {
        var out = ByteBuffer()
        Array(text.utf8).withUnsafeBytes { Gzip.compress($0, into: &out) }
        return Array(out.readableBytesView)
    }

    func gunzip(_ bytes: [UInt8], limit: Int = 1 << 20) throws(WireError) -> String {
        do {
            let out = try bytes.withUnsafeBytes { try Gzip.decompress($0, maxOutputBytes: limit) }
            return String(buffer: out)
        } catch let error as WireError {
            throw error
        } catch {
            fatalError("Gzip.decompress throws WireError only, got \(error)")
        }
    }

    @Test func roundTripsOneMember() throws {
        let text = (0..<500).map { #"{"i":\#($0),"message":"hello"}"# }.joined(separator: "\n")
        #expect(try gunzip(gzip(text)) == text)
    }

    @Test func decodesEveryConcatenatedMember() throws {
        // Stored records are forwarded back to back; every member must come out, not only the first.
        let members = ["first\n", "second\n", "third\n"]
        let stream = members.flatMap(gzip)
        #expect(try gunzip(stream) == members.joined())
    }

    @Test func refusesATruncatedLastMember() {
        let stream = gzip("complete\n") + gzip(String(repeating: "x", count: 5000)).dropLast(7)
        #expect(throws: WireError.self) { try gunzip(Array(stream)) }
        do { _ = try gunzip(Array(stream)) } catch { #expect(error.code == .truncatedGzip) }
    }

    @Test func refusesBytesThatAreNotGzip() {
        do {
            _ = try gunzip(Array("{\"plain\":\"json\"}".utf8))
            Issue.record("plain JSON decoded as gzip")
        } catch {
            #expect(error.code == .invalidGzip)
        }
    }

    @Test func refusesGarbageAfterAMember() {
        do {
            _ = try gunzip(gzip("ok\n") + Array("trailing garbage".utf8))
            Issue.record("garbage after a member was accepted")
        } catch {
            #expect(error.code == .invalidGzip)
        }
    }

    @Test func stopsAGzipBombAtTheLimit() {
        let bomb = gzip(String(repeating: "\0", count: 20 << 20))  // 20 MiB of zeros, ~20 KiB compressed
        #expect(bomb.count < 100_000)
        do {
            _ = try gunzip(bomb, limit: 1 << 20)
            Issue.record("bomb decompressed past the limit")
        } catch {
            #expect(error.code == .outputLimitExceeded)
        }
    }

    @Test func acceptsOutputExactlyAtTheLimit() throws {
        let text = String(repeating: "a", count: 4096)
        #expect(try gunzip(gzip(text), limit: 4096) == text)
    }

    @Test func decodesInputFedInSmallPieces() throws {
        let text = (0..<2000).map { "line \($0)" }.joined(separator: "\n")
        let stream = gzip(text) + gzip(text)
        let inflater = try GzipInflater(maxOutputBytes: 1 << 20)
        var out = ByteBuffer()
        for start in stride(from: 0, to: stream.count, by: 7) {
            let piece = Array(stream[start..<min(start + 7, stream.count)])
            try piece.withUnsafeBytes { try inflater.inflate($0, into: &out) }
        }
        try inflater.finish()
        #expect(String(buffer: out) == text + text)
        #expect(inflater.membersCompleted == 2)
    }

    @Test func systemGunzipReadsConcatenatedMembers() throws {
        // The peer check: what Ferry forwards must decode with a standard gzip tool too, members made with
        // either hash table (inputs up to `Gzip.smallInput` and above) included.
        let sizes = [Gzip.smallInput - 600, Gzip.smallInput, Gzip.smallInput + 1, 50_000]
        func lines(_ size: Int) -> String {
            var bytes: [UInt8] = []
            for index in 0..<size {
                let letter = UInt8(97 + (index * 7) % 26)
                bytes.append(index % 61 == 60 ? 0x0A : letter)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        let texts: [String] = ["{\"a\":1}\n"] + sizes.map(lines) + ["{\"b\":2}\n"]
        let stream = texts.flatMap { gzip($0) }
        let file = NSTemporaryDirectory() + "/ferry-gzip-\(UUID().uuidString).gz"
        try Data(stream).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-dc", file]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(String(decoding: output, as: UTF8.self) == texts.joined())
    }

    @Test func crc32MatchesTheStandardCheckValue() {
        let crc = Array("123456789".utf8).withUnsafeBytes { Gzip.crc32($0) }
        #expect(crc == 0xCBF4_3926)
    }
}
