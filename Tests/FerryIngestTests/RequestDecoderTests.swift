@testable import FerryIngest
import FerryWire
import HTTPTypes
import NIOCore
import Testing

@Suite struct RequestDecoderTests {
    let limits = IngestConfiguration.Limits()

    func decode(_ body: [UInt8], format: RequestDecoder.Format = .ndjson, gzip: Bool = false,
                limits: IngestConfiguration.Limits = IngestConfiguration.Limits(), chunk: Int = 7) throws -> [String] {
        var decoder = try RequestDecoder(format: format, gzip: gzip, limits: limits)
        for start in stride(from: 0, to: body.count, by: chunk) {
            try decoder.consume(ByteBuffer(bytes: body[start..<min(start + chunk, body.count)]))
        }
        return try decoder.finish().records.flatMap { try $0.events().map { String(buffer: $0) } }
    }

    func refusal(_ body: [UInt8], format: RequestDecoder.Format = .ndjson, gzip: Bool = false,
                 limits: IngestConfiguration.Limits = IngestConfiguration.Limits()) -> IngestError? {
        do {
            _ = try decode(body, format: format, gzip: gzip, limits: limits)
            return nil
        } catch {
            return error as? IngestError
        }
    }

    func gzip(_ text: String) -> [UInt8] {
        var out = ByteBuffer()
        Array(text.utf8).withUnsafeBytes { Gzip.compress($0, into: &out) }
        return Array(out.readableBytesView)
    }

    @Test func ndjsonLinesAreStoredByteForByte() throws {
        let body = "{\"a\":1}\r\n\n  \n{\"b\": \"x\"}\n{\"c\":[1, 2.50]}"  // CRLF, blank lines, no final newline
        #expect(try decode(Array(body.utf8)) == [#"{"a":1}"#, #"{"b": "x"}"#, #"{"c":[1, 2.50]}"#])
    }

    @Test func gzipBodiesOfSeveralMembersDecodeWhole() throws {
        let body = gzip("{\"a\":1}\n") + gzip("{\"b\":2}\n")
        #expect(try decode(body, gzip: true) == [#"{"a":1}"#, #"{"b":2}"#])
    }

    @Test func invalidJSONNamesItsLine() {
        let error = refusal(Array("{\"a\":1}\n{\"b\":2}\n{\"c\":oops}\n".utf8))
        #expect(error?.status == 400 && error?.reason == "invalid_json" && error?.line == 3)
    }

    @Test func invalidUTF8IsItsOwnReason() {
        let error = refusal(Array("{\"a\":1}\n".utf8) + Array("{\"b\":\"".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8))
        #expect(error?.reason == "invalid_utf8" && error?.line == 2)
    }

    @Test func emptyAndBlankBodiesAreRefused() {
        #expect(refusal([])?.reason == "empty_body")
        #expect(refusal(Array("\n \n".utf8))?.reason == "empty_body")
    }

    @Test func truncatedGzipIsRefused() {
        let body = gzip(String(repeating: "{\"a\":1}\n", count: 100))
        #expect(refusal(Array(body.dropLast(10)), gzip: true)?.reason == "invalid_gzip")
        #expect(refusal(Array("{\"a\":1}\n".utf8), gzip: true)?.reason == "invalid_gzip")
    }

    @Test func aGzipBombStopsAtTheDecompressedLimit() throws {
        var small = limits
        small.maxDecompressedBytes = 1 << 20
        let bomb = gzip(String(repeating: " ", count: 50 << 20))
        var decoder = try RequestDecoder(format: .ndjson, gzip: true, limits: small)
        do {
            try decoder.consume(ByteBuffer(bytes: bomb))
            Issue.record("bomb accepted")
        } catch {
            #expect((error as? IngestError)?.status == 413)
        }
    }

    @Test func sizeAndCountLimitsAreEnforced() {
        var small = limits
        small.maxBodyBytes = 100
        #expect(refusal(Array(String(repeating: "{\"a\":1}\n", count: 20).utf8), limits: small)?.reason == "body_too_large")
        small = limits
        small.maxEventBytes = 50
        let error = refusal(Array(("{\"a\":1}\n{\"b\":\"" + String(repeating: "x", count: 100) + "\"}\n").utf8), limits: small)
        #expect(error?.reason == "event_too_large" && error?.line == 2)
        small = limits
        small.maxEventsPerRequest = 3
        #expect(refusal(Array(String(repeating: "{\"a\":1}\n", count: 4).utf8), limits: small)?.reason == "too_many_events")
    }

    @Test func jsonBodiesMayBeAnObjectOrAnArrayAndArePutOnOneLine() throws {
        #expect(try decode(Array(#"{"a": 1}"#.utf8), format: .json) == [#"{"a": 1}"#])
        #expect(try decode(Array("[{\"a\":1},\n {\"b\":\n 2}]".utf8), format: .json) == [#"{"a":1}"#, #"{"b":2}"#])
        let error = refusal(Array("[{\"a\":1},\n{\"b\":}]".utf8), format: .json)
        #expect(error?.reason == "invalid_json" && error?.line == 2)
    }

    @Test func textLinesBecomeMessageEvents() throws {
        let events = try decode(Array("plain line\nwith \"quotes\" and \\ and \ttab\n\nünïcode\n".utf8), format: .text)
        #expect(events == [#"{"message":"plain line"}"#, #"{"message":"with \"quotes\" and \\ and \ttab"}"#, #"{"message":"ünïcode"}"#])
        for event in events {
            #expect((try? Array(event.utf8).withUnsafeBytes { try JSONValidator.validateObject($0) }) != nil)
        }
    }

    @Test func contentTypesMapToFormats() {
        #expect(RequestDecoder.Format(contentType: "application/x-ndjson") == .ndjson)
        #expect(RequestDecoder.Format(contentType: "application/json; charset=utf-8") == .json)
        #expect(RequestDecoder.Format(contentType: "text/plain") == .text)
        #expect(RequestDecoder.Format(contentType: "application/xml") == nil)
        // HTTP's media types are case-insensitive, with optional spaces and tabs around them.
        #expect(RequestDecoder.Format(contentType: " Application/X-NDJSON\t;charset=utf-8") == .ndjson)
        #expect(RequestDecoder.Format(contentType: "TEXT/plain ") == .text)
        #expect(RequestDecoder.Format(contentType: "application/jsonx") == nil)
        #expect(RequestDecoder.Format(contentType: "application/jso") == nil)
        #expect(RequestDecoder.Format(contentType: "") == nil)
        #expect(RequestDecoder.Format(contentType: nil) == .ndjson)
    }
}

/// `HTTPToken` compares bytes itself (instead of lowercasing and trimming strings): each rule it keeps,
/// with the cases a byte test gets wrong when it is off by one (the letters' bounds, a space or tab at
/// either end, a multi-byte character at the end).
@Suite struct HTTPTokenTests {
    @Test func tokensCompareInEitherCaseWithoutTheSpaceAround() {
        #expect(HTTPToken.equals("GZip", "gzip"))
        #expect(HTTPToken.equals(HTTPToken.trimmed(" \tx-gzip\t "), "x-gzip"))
        #expect(!HTTPToken.equals("gzi", "gzip"))
        #expect(!HTTPToken.equals("gzipp", "gzip"))
        // Only A–Z fold: "@" (0x40) and "[" (0x5B) sit next to them and must not become "`" or "{".
        #expect(!HTTPToken.equals("@", "`"))
        #expect(!HTTPToken.equals("[", "{"))
        #expect(HTTPToken.equals("AZ", "az"))
        #expect(HTTPToken.trimmed("  ").isEmpty)
        #expect(HTTPToken.trimmed("") == "")
        #expect(HTTPToken.trimmed(" é ") == "é")
        #expect(HTTPToken.trimmed("a b") == "a b")
    }

    @Test func listsHoldATokenAmongOthers() {
        #expect(HTTPToken.list("close", contains: "close"))
        #expect(HTTPToken.list("keep-alive, Close", contains: "close"))
        #expect(HTTPToken.list("Close ,keep-alive", contains: "close"))
        #expect(!HTTPToken.list("keep-alive", contains: "close"))
        #expect(!HTTPToken.list("closed, enclose", contains: "close"))
        #expect(!HTTPToken.list("", contains: "close"))
    }

    @Test func aHeadReadsRepeatedFieldsAsTheSubscriptDoes() {
        var fields: HTTPFields = [.contentType: "application/json", .contentLength: "12", .connection: "keep-alive"]
        fields.append(HTTPField(name: .connection, value: "close"))
        fields.append(HTTPField(name: IngestHandler.ferryBatch, value: "edge/1-2"))
        let head = RequestHead(fields)
        #expect(head.contentType == fields[.contentType])
        #expect(head.connection == fields[.connection])
        #expect(head.connection == "keep-alive, close")
        #expect(head.asksToClose)
        #expect(head.length == 12)
        #expect(head.batch == "edge/1-2")
        #expect(head.contentEncoding == nil && head.transferEncoding == nil && head.authorization == nil)
    }
}
