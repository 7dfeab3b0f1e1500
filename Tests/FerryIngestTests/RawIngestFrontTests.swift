import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTPTypesHTTP1
import HTTPTypes
import Testing

@testable import FerryIngest

/// `SimpleRequest`: which heads the raw front takes. Anything it does not take goes to NIO's decoder, so a
/// wrong "no" costs speed and a wrong "yes" costs correctness: the cases below are the "no"s that matter.
@Suite struct SimpleRequestTests {
    static let body = #"{"a":1}"# + "\n"

    static func request(_ fields: String, body: String = body, line: String = "POST / HTTP/1.1") -> String {
        "\(line)\r\nHost: x\r\n\(fields)\r\n\(body)"
    }

    static func parse(_ text: String) -> (SimpleRequest?, ByteBuffer) {
        var buffer = ByteBuffer(string: text)
        let request = SimpleRequest.parse(&buffer, maxBodyBytes: 1000)
        return (request, buffer)
    }

    @Test func aPlainPostIsTakenWithItsFieldsAndBody() throws {
        let text = Self.request("content-type: application/x-ndjson\r\nContent-Encoding:  gzip \r\nAuthorization: Basic eDp5\r\nFerry-Batch: a/1-2\r\nConnection: Keep-Alive\r\nContent-Length: 8\r\n")
        let (parsed, rest) = Self.parse(text + "NEXT")
        let request = try #require(parsed)
        #expect(request.head.contentType == "application/x-ndjson")
        #expect(request.head.contentEncoding == "gzip")
        #expect(request.head.authorization == "Basic eDp5")
        #expect(request.head.batch == "a/1-2")
        #expect(request.head.length == 8)
        #expect(String(buffer: request.body) == Self.body)
        #expect(String(buffer: rest) == "NEXT")  // a pipelined request after it is left in the buffer
    }

    @Test func aRepeatedFieldReadsAsTheHTTPTypesGiveIt() throws {
        let (parsed, _) = Self.parse(Self.request("Content-Type: a\r\nContent-Type: b\r\nContent-Length: 8\r\n"))
        #expect(try #require(parsed).head.contentType == "a, b")
    }

    @Test(arguments: [
        ("chunked", request("Transfer-Encoding: chunked\r\nContent-Length: 8\r\n")),
        ("expect", request("Expect: 100-continue\r\nContent-Length: 8\r\n")),
        ("close", request("Connection: close\r\nContent-Length: 8\r\n")),
        ("upgrade", request("Upgrade: h2c\r\nContent-Length: 8\r\n")),
        ("no length", request("Content-Type: application/x-ndjson\r\n")),
        ("two lengths", request("Content-Length: 8\r\nContent-Length: 8\r\n")),
        ("signed length", request("Content-Length: +8\r\n")),
        ("too long", request("Content-Length: 1001\r\n", body: String(repeating: "x", count: 1001))),
        ("body not all here", request("Content-Length: 9\r\n")),
        ("head not all here", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n"),
        ("folded line", request("Content-Length: 8\r\nX-A: 1\r\n 2\r\n")),
        ("bare LF", "POST / HTTP/1.1\nHost: x\nContent-Length: 8\n\n" + body),
        ("space before colon", request("Content-Length : 8\r\n")),
        ("control byte in a value", request("X-A: a\u{1}b\r\nContent-Length: 8\r\n")),
        ("other method", request("Content-Length: 8\r\n", line: "PUT / HTTP/1.1")),
        ("other path", request("Content-Length: 8\r\n", line: "POST /x HTTP/1.1")),
        ("HTTP/1.0", request("Content-Length: 8\r\n", line: "POST / HTTP/1.0")),
        ("lower-case method", request("Content-Length: 8\r\n", line: "post / HTTP/1.1")),
        ("name not a token", request("X(A): 1\r\nContent-Length: 8\r\n")),
        ("CR without LF", request("X-A: a\rb\r\nContent-Length: 8\r\n")),
        ("keep-alive and close", request("Connection: keep-alive, close\r\nContent-Length: 8\r\n")),
        ("too many fields", request(String(repeating: "X-A: 1\r\n", count: SimpleRequest.maxFields) + "Content-Length: 8\r\n")),
    ])
    func anythingElseIsLeftToTheDecoderUntouched(_ name: String, _ text: String) {
        let (parsed, rest) = Self.parse(text)
        #expect(parsed == nil, "\(name)")
        #expect(String(buffer: rest) == text, "\(name)")
    }

    /// Against the other path (NIO's decoder, llhttp, then the HTTP types' conversion and `RequestHead`), on
    /// heads mutated at random (a fixed seed: the same cases every run): whatever `SimpleRequest` takes,
    /// that path parses too, as a `POST /` HTTP/1.1 request with the same body, ending where the raw front
    /// says it ends, and a `RequestHead` equal field for field. A "yes" of the raw front that the other
    /// path would refuse or read otherwise fails here.
    @Test func whateverIsTakenNIOsDecoderReadsTheSame() throws {
        var random = SeededGenerator(seed: 20261203)
        let alphabet = Array("aZ0-:;, \t\r\n(\"/".utf8) + [0x00, 0x01, 0x7F, 0x80, 0xC3, 0xFF]
        let names = ["Content-Length", "content-type", "Content-Encoding", "Authorization", "Ferry-Batch", "Connection",
                     "Transfer-Encoding", "Host", "X-A", "Expect"]
        let values = ["8", "08", "9", " 8 ", "application/x-ndjson", "gzip", "keep-alive", "close", "chunked", "a/1-2", "", "x y"]
        var taken = 0
        for _ in 0..<3000 {
            var head = "POST / HTTP/1.1\r\nHost: x\r\n"
            for _ in 0..<Int(random.next() % 4) {
                head += names[Int(random.next() % UInt64(names.count))] + ": " + values[Int(random.next() % UInt64(values.count))] + "\r\n"
            }
            head += "Content-Length: 8\r\n"
            var bytes = Array(head.utf8)
            for _ in 0..<Int(random.next() % 3) {
                let at = 17 + Int(random.next() % UInt64(bytes.count - 17))
                bytes.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: at)
            }
            bytes += Array("\r\n".utf8) + Array(Self.body.utf8) + Array("GET /next HTTP/1.1\r\n\r\n".utf8)
            var buffer = ByteBuffer(bytes: bytes)
            guard let request = SimpleRequest.parse(&buffer, maxBodyBytes: 1000) else { continue }
            taken += 1
            let consumed = bytes.count - buffer.readableBytes
            let printable = String(decoding: bytes[..<consumed], as: UTF8.self).debugDescription
            let decoded: (head: HTTPRequestHead, body: [UInt8], ended: Bool)
            do {
                decoded = try Self.decodeWithNIO(Array(bytes[..<consumed]))
            } catch {
                Issue.record("NIO refuses what the raw front takes (\(error)): \(printable)")
                continue
            }
            let nio = decoded
            #expect(nio.head.method == .POST && nio.head.uri == "/" && nio.head.version == .http1_1, "\(printable)")
            #expect(nio.ended, "NIO did not end the request where the raw front did: \(printable)")
            #expect(nio.body == Array(buffer: request.body), "\(printable)")
            let other = RequestHead(try HTTPRequest(nio.head, secure: false, splitCookie: false).headerFields)
            #expect(other.contentLength == request.head.contentLength, "\(printable)")
            #expect(other.contentType == request.head.contentType, "\(printable)")
            #expect(other.contentEncoding == request.head.contentEncoding, "\(printable)")
            #expect(other.authorization == request.head.authorization, "\(printable)")
            #expect(other.batch == request.head.batch, "\(printable)")
            #expect(other.connection == nil || other.connection == "keep-alive", "\(printable)")
            #expect(other.transferEncoding == nil && nio.head.headers["expect"].isEmpty, "\(printable)")
        }
        #expect(taken > 300)  // the mutations leave enough heads plain for the comparison to mean something
    }

    /// One request decoded by NIO's HTTP/1 server decoder: its head, its body, whether it ended.
    static func decodeWithNIO(_ bytes: [UInt8]) throws -> (head: HTTPRequestHead, body: [UInt8], ended: Bool) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        var ended = false
        while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let h): head = h
            case .body(let bytes): body += Array(buffer: bytes)
            case .end: ended = true
            }
        }
        return (try #require(head), body, ended)
    }

    @Test func aHeadLargerThanItsBoundIsLeftToTheDecoder() {
        let text = Self.request("X-Big: \(String(repeating: "a", count: SimpleRequest.maxHeadBytes))\r\nContent-Length: 8\r\n")
        #expect(Self.parse(text).0 == nil)
    }
}

/// `RawIngestFront` in a testing channel, over a real queue: a whole plain request is answered here and
/// nothing goes up; anything else goes up as it came, and so does the rest of the connection.
@Suite(.timeLimit(.minutes(2)))
struct RawIngestFrontTests {
    static func post(_ body: String, fields: String = "") -> String {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\(fields)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// The front over `queue` in a connected testing channel, with a recorder of the events it passes up.
    private func channel(_ queue: Queue, accepting: Bool = true) async throws -> (NIOAsyncTestingChannel, EventRecorder) {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let handler = IngestHandler(settings: IngestLiveSettings(auth: nil, limits: IngestConfiguration.Limits()),
                                    intake: Intake(input: "http", queue: queue, stamp: .none, logger: logger),
                                    logger: logger, metrics: IngestMetrics(), isAccepting: { accepting })
        let recorder = EventRecorder()
        let channel = try await NIOAsyncTestingChannel(handlers: [
            RawIngestFront(handler: handler, serverName: "ferry", coalescer: nil, idle: nil), recorder,
        ])
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).get()
        return (channel, recorder)
    }

    /// Runs `body` with the front over a fresh queue (see `channel`), then finishes the channel (unless
    /// `finish` is false: a channel whose close never completes).
    private func withFront(accepting: Bool = true, finish: Bool = true,
                           _ body: (Queue, NIOAsyncTestingChannel, EventRecorder) async throws -> Void) async throws {
        try await withTemporaryQueue { queue, _ in
            let (channel, recorder) = try await channel(queue, accepting: accepting)
            try await body(queue, channel, recorder)
            if finish { _ = try await channel.finish(acceptAlreadyClosed: true) }
        }
    }

    /// Delivers `reads` in one turn of the loop: no answer can come between them.
    private func readInOneTurn(_ channel: NIOAsyncTestingChannel, _ reads: [String]) async throws {
        try await channel.testingEventLoop.executeInContext {
            for read in reads { channel.pipeline.fireChannelRead(NIOAny(ByteBuffer(string: read))) }
        }
    }

    /// The answers written so far, each as text, after running what the queue's writer handed to the loop;
    /// waits (with a deadline) until there are `count`.
    private func answers(_ channel: NIOAsyncTestingChannel, count: Int) async throws -> [String] {
        var answers: [String] = []
        _ = try await eventuallyAsync(timeout: .seconds(20), every: .milliseconds(5)) {
            await channel.testingEventLoop.run()
            while let written = try await channel.readOutbound(as: IOData.self) {
                guard case .byteBuffer(let bytes) = written else { continue }
                answers.append(String(buffer: bytes))
            }
            return answers.count >= count
        }
        return answers
    }

    @Test func aWholePlainRequestIsAnsweredHereAndNothingGoesUp() async throws {
        try await withFront { queue, channel, _ in
            try await channel.writeInbound(ByteBuffer(string: Self.post(#"{"a":1}"# + "\n" + #"{"a":2}"# + "\n")))
            let answers = try await answers(channel, count: 1)
            let answer = try #require(answers.first)
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            #expect(answer.contains("Content-Length: 12\r\n") && answer.contains("Server: ferry\r\n") && answer.contains("Date: "), "\(answer)")
            #expect(answer.hasSuffix("\r\n\r\n" + #"{"stored":2}"#), "\(answer)")
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
            #expect(queue.stats.appendedEvents == 2)
        }
    }

    /// Two requests in one read, and a third that comes while their answers are under way: three answers,
    /// in order, each with its own count; nothing goes up.
    @Test func requestsThatComeTogetherAreAnsweredInOrder() async throws {
        try await withFront { queue, channel, _ in
            try await readInOneTurn(channel, [
                Self.post(#"{"a":1}"# + "\n") + Self.post(#"{"b":1}"# + "\n" + #"{"b":2}"# + "\n"),
                Self.post(#"{"c":1}"# + "\n" + #"{"c":2}"# + "\n" + #"{"c":3}"# + "\n"),
            ])
            let answers = try await answers(channel, count: 3)
            #expect(answers.map { $0.split(separator: "\r\n\r\n").last.map(String.init) } == [#"{"stored":1}"#, #"{"stored":2}"#, #"{"stored":3}"#], "\(answers)")
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
            #expect(queue.stats.appendedEvents == 6)
        }
    }

    /// A request that is not plain goes up as it came; so does every byte after it on that connection, even
    /// a plain request, which the HTTP pipeline then answers.
    @Test func anythingElseGoesUpAndSoDoesTheRestOfTheConnection() async throws {
        try await withFront { queue, channel, _ in
            let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"a\":1}\n\r\n0\r\n\r\n"
            try await channel.writeInbound(ByteBuffer(string: chunked))
            let plain = Self.post(#"{"a":1}"# + "\n")
            try await channel.writeInbound(ByteBuffer(string: plain))
            #expect(try await channel.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == chunked)
            #expect(try await channel.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == plain)
            #expect(try await channel.readOutbound(as: IOData.self) == nil)
            #expect(queue.stats.appendedEvents == 0)
        }
    }

    /// Refusals that keep the connection (503 while shutting down) for requests that came together: each
    /// answered, in order, the connection still open, nothing stored or passed up.
    @Test func refusedRequestsThatCameTogetherAreEachAnswered() async throws {
        try await withFront(accepting: false) { queue, channel, _ in
            let request = Self.post(#"{"a":1}"# + "\n")
            try await channel.writeInbound(ByteBuffer(string: String(repeating: request, count: 3)))
            let answers = try await answers(channel, count: 3)
            #expect(answers.map { $0.hasPrefix("HTTP/1.1 503 ") } == [true, true, true], "\(answers)")
            #expect(channel.isActive)
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
            #expect(queue.stats.appendedEvents == 0)
        }
    }

    /// A request not whole in the first read goes up, with what follows; a request that comes in pieces
    /// while an answer is under way is taken whole after it (what was held is looked at together).
    @Test func aRequestInPiecesGoesUpUnlessItCameWhileAnAnswerWasUnderWay() async throws {
        try await withFront { queue, channel, _ in
            let second = Self.post(#"{"b":1}"# + "\n")
            let cut = second.index(second.startIndex, offsetBy: 30)
            try await readInOneTurn(channel, [Self.post(#"{"a":1}"# + "\n") + second[..<cut], String(second[cut...])])
            let answers = try await answers(channel, count: 2)
            #expect(answers.map { $0.hasSuffix(#"{"stored":1}"#) } == [true, true], "\(answers)")
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)

            try await channel.writeInbound(ByteBuffer(string: String(second[..<cut])))
            try await channel.writeInbound(ByteBuffer(string: String(second[cut...])))
            var up = ""
            while let bytes = try await channel.readInbound(as: ByteBuffer.self) { up += String(buffer: bytes) }
            #expect(up == second)
            #expect(queue.stats.appendedEvents == 2)
        }
    }

    /// A refusal that ends the connection (400 for a body that is not NDJSON) is written, then the channel
    /// closes; nothing is stored.
    @Test func aRefusalThatClosesIsWrittenAndThenTheConnectionCloses() async throws {
        try await withFront { queue, channel, _ in
            try await channel.writeInbound(ByteBuffer(string: Self.post("not json\n")))
            let answers = try await answers(channel, count: 1)
            #expect(answers.first?.hasPrefix("HTTP/1.1 400 Bad Request\r\n") == true, "\(answers)")
            #expect(answers.first?.lowercased().contains("connection: close\r\n") == true, "\(answers)")
            #expect(try await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(5)) {
                await channel.testingEventLoop.run()
                return !channel.isActive
            })
            #expect(queue.stats.appendedEvents == 0)
        }
    }

    /// A refusal that closes, with requests pipelined behind it: one answer; the requests behind it are
    /// neither stored nor passed up (they could not be answered on a closing connection).
    @Test func nothingBehindARefusalThatClosesIsTakenOrPassedUp() async throws {
        try await withFront { queue, channel, _ in
            let good = Self.post(#"{"a":1}"# + "\n")
            try await readInOneTurn(channel, [Self.post("not json\n") + good, good + "NOT HTTP\r\n\r\n"])
            let answers = try await answers(channel, count: 1)
            #expect(try await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(5)) {
                await channel.testingEventLoop.run()
                return !channel.isActive
            })
            #expect(answers.count == 1 && answers[0].hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(answers)")
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
            // Anything the front had taken would be committed before this append.
            _ = try await queue.append(EventBatch(lines: [Array(#"{"z":1}"#.utf8)]))
            #expect(queue.stats.appendedEvents == 1)
        }
    }

    /// Once a close has started above the front (here it never completes, as while TLS shuts down and
    /// decrypted bytes still arrive), a whole plain request is neither taken nor passed up.
    @Test func nothingIsTakenOnceACloseHasStarted() async throws {
        try await withFront(finish: false) { queue, channel, recorder in
            try await channel.pipeline.addHandler(CloseSwallower(), position: .first)
            try await channel.testingEventLoop.executeInContext { channel.pipeline.close(promise: nil) }
            #expect(channel.isActive)
            try await channel.writeInbound(ByteBuffer(string: Self.post(#"{"a":1}"# + "\n")))
            await channel.testingEventLoop.run()
            #expect(try await channel.readOutbound(as: IOData.self) == nil)
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
            _ = try await queue.append(EventBatch(lines: [Array(#"{"z":1}"#.utf8)]))
            #expect(queue.stats.appendedEvents == 1)
            #expect(recorder.events.isEmpty)
        }
    }

    /// The status line carries the reason phrase NIO's encoder writes on the other path, also for a
    /// refusal whose status was made from its code alone.
    @Test func aRefusalHasTheStandardReasonPhrase() async throws {
        try await withFront(accepting: false) { queue, channel, _ in
            try await channel.writeInbound(ByteBuffer(string: Self.post(#"{"a":1}"# + "\n")))
            let answers = try await answers(channel, count: 1)
            #expect(answers.first?.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n") == true, "\(answers)")
        }
    }

    /// An event that comes while an answer is under way (a graceful close's quiesce, a half-close) goes up
    /// only after the answer is written: Hummingbird would close, or end its request loop, before it.
    @Test func anEventDuringAnAnswerGoesUpAfterIt() async throws {
        try await withFront { queue, channel, recorder in
            let meanwhile = try await channel.testingEventLoop.executeInContext {
                channel.pipeline.fireChannelRead(NIOAny(ByteBuffer(string: Self.post(#"{"a":1}"# + "\n"))))
                channel.pipeline.fireUserInboundEventTriggered("quiesce")
                return recorder.events
            }
            #expect(meanwhile.isEmpty)
            let answers = try await answers(channel, count: 1)
            #expect(answers.first?.hasSuffix(#"{"stored":1}"#) == true, "\(answers)")
            let after = try await channel.testingEventLoop.executeInContext { recorder.events }
            #expect(after == ["quiesce"])
        }
    }

    /// Events pass up as they come when no answer is under way (a TLS handshake's end must not end the
    /// fast mode), and the fast mode goes on after them.
    @Test func eventsPassUpAndTheFastModeGoesOn() async throws {
        try await withFront { queue, channel, recorder in
            let events = try await channel.testingEventLoop.executeInContext {
                channel.pipeline.fireUserInboundEventTriggered("handshake done")
                return recorder.events
            }
            #expect(events == ["handshake done"])
            try await channel.writeInbound(ByteBuffer(string: Self.post(#"{"a":1}"# + "\n")))
            let answers = try await answers(channel, count: 1)
            #expect(answers.first?.hasSuffix(#"{"stored":1}"#) == true, "\(answers)")
            #expect(try await channel.readInbound(as: ByteBuffer.self) == nil)
        }
    }
}

/// Swallows closes: a close that has started and not ended (as NIOSSL's while TLS shuts down).
final class CloseSwallower: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = Any

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {}
}

/// Records the string events that reach it.
final class EventRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private(set) var events: [String] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? String { events.append(event) }
        context.fireUserInboundEventTriggered(event)
    }
}
