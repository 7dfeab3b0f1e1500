@testable import FerryIngest
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

/// `RequestGuard` in an `EmbeddedChannel`: its time is advanced by hand, so every bound is exact and
/// nothing sleeps.
@Suite struct RequestGuardTests {
    static let linger = RequestGuard.Linger(maxBytes: 1000, maxTime: .seconds(30), maxIdle: .seconds(5))

    /// A channel with the guard (deadline 30 s, body limit 100 bytes) behind a recorder of half-closes:
    /// `EmbeddedChannel` would close entirely on `close(mode: .output)`.
    func channel() throws -> (EmbeddedChannel, HalfCloseRecorder) {
        let recorder = HalfCloseRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([recorder, RequestGuard(deadline: .seconds(30), maxBodyBytes: 100, linger: Self.linger)])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, recorder)
    }

    func head(_ fields: HTTPFields = [:]) -> HTTPRequestPart {
        .head(HTTPRequest(method: .post, scheme: "http", authority: "x", path: "/", headerFields: fields))
    }

    func body(_ count: Int) -> HTTPRequestPart { .body(ByteBuffer(repeating: 0x61, count: count)) }

    func answer(_ channel: EmbeddedChannel, status: HTTPResponse.Status, close: Bool) throws {
        var fields: HTTPFields = [.contentLength: "0"]
        if close { fields[.connection] = "close" }
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: status, headerFields: fields)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
    }

    /// The statuses written, in order.
    func statuses(_ channel: EmbeddedChannel) throws -> [Int] {
        var out: [Int] = []
        while let part = try channel.readOutbound(as: HTTPResponsePart.self) {
            if case .head(let response) = part { out.append(response.status.code) }
        }
        return out
    }

    @Test func aRequestNotCompleteByItsDeadlineIsCut() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try channel.writeInbound(body(10))
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    /// The deadline's timer is not moved per request: one armed for an earlier request must neither cut
    /// the next one before that one's own deadline, nor let it run past it, nor cut an idle connection.
    @Test func eachRequestOnAConnectionGetsItsOwnDeadline() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try channel.writeInbound(HTTPRequestPart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        try channel.writeInbound(head())  // due at 40 s; the first request's timer fires at 30 s
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))  // 39 s
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))  // 40 s
        #expect(!channel.isActive)

        let (idle, _) = try self.channel()
        for _ in 0..<3 {
            try idle.writeInbound(head())
            try idle.writeInbound(HTTPRequestPart.end(nil))
            idle.embeddedEventLoop.advanceTime(by: .seconds(50))
        }
        #expect(idle.isActive)
        try idle.writeInbound(head())
        idle.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(!idle.isActive)
    }

    @Test func aCompleteRequestIsNotCutAndItsPartsPassThrough() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try channel.writeInbound(body(10))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
        var parts = 0
        while try channel.readInbound(as: HTTPRequestPart.self) != nil { parts += 1 }
        #expect(parts == 3)
        try answer(channel, status: .ok, close: false)
        #expect(channel.isActive)
        #expect(try statuses(channel) == [200])
        _ = try? channel.finish()
    }

    @Test func aClosingAnswerToACompleteRequestClosesAtOnce() throws {
        let (channel, recorder) = try channel()
        try channel.writeInbound(head())
        try channel.writeInbound(HTTPRequestPart.end(nil))
        try answer(channel, status: .badRequest, close: true)
        #expect(try statuses(channel) == [400])
        #expect(!channel.isActive)
        #expect(recorder.outputCloses == 0)
    }

    @Test func aRefusalMidBodyLingersUntilTheBodyEnds() throws {
        let (channel, recorder) = try channel()
        try channel.writeInbound(head([.contentLength: "50000"]))
        try channel.writeInbound(body(50))
        while try channel.readInbound(as: HTTPRequestPart.self) != nil {}
        try answer(channel, status: .contentTooLarge, close: true)
        #expect(try statuses(channel) == [413])
        // The answer is out and the output shut: the client reads it, then end of file.
        #expect(recorder.outputCloses == 1)
        #expect(channel.isActive)
        // What the client still sends is read and dropped, below Hummingbird.
        for _ in 0..<9 {
            try channel.writeInbound(body(100))
            channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        }
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        #expect(channel.isActive)
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(!channel.isActive)
    }

    @Test func aLingerEndsAfterItsBytes() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try answer(channel, status: .contentTooLarge, close: true)
        try channel.writeInbound(body(1000))
        #expect(channel.isActive)
        try channel.writeInbound(body(1))
        #expect(!channel.isActive)
    }

    @Test func aLingerEndsAfterAQuietSpell() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try answer(channel, status: .contentTooLarge, close: true)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(4999))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
    }

    @Test func aLingerEndsAfterItsTimeEvenWhileBytesCome() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(head())
        try answer(channel, status: .contentTooLarge, close: true)
        // A byte every 4 s keeps the quiet-spell bound away; the whole linger still ends at 30 s.
        for _ in 0..<7 {
            try channel.writeInbound(body(1))
            channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        }
        #expect(channel.isActive)
        try channel.writeInbound(body(1))
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func expectContinueIsAnsweredAtOnceUnlessTheBodyIsTooLarge() throws {
        let (small, _) = try channel()
        try small.writeInbound(head([.expect: "100-continue", .contentLength: "100"]))
        #expect(try statuses(small) == [100])
        _ = try? small.finish()

        let (large, _) = try channel()
        try large.writeInbound(head([.expect: "100-continue", .contentLength: "101"]))
        #expect(try statuses(large) == [])
        // The handler's 413 comes at once; the client, which sent no body, is not waited for beyond the linger.
        try answer(large, status: .contentTooLarge, close: true)
        #expect(try statuses(large) == [413])
        large.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(!large.isActive)

        let (plain, _) = try channel()
        try plain.writeInbound(head([.contentLength: "10"]))
        #expect(try statuses(plain) == [])
        _ = try? plain.finish()
    }
}

/// Records `close(mode: .output)` and keeps the embedded channel open, as a socket's half-close does.
final class HalfCloseRecorder: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    private(set) var outputCloses = 0

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .output {
            outputCloses += 1
            promise?.succeed(())
        } else {
            context.close(mode: mode, promise: promise)
        }
    }
}
