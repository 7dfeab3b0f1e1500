import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Bounds the time a client may take to send one request, answers `Expect: 100-continue`, and ends a
/// connection after a response that says `Connection: close` with a lingering close, so that a client
/// still sending its body reads the answer instead of a reset.
///
/// - **Request deadline.** Hummingbird's idle timeout resets on every body chunk, so a client that drips
///   one byte at a time (slowloris) would hold a connection forever: a request must be complete
///   `deadline` after its head arrived. The head itself is bounded by the idle timeout.
/// - **Lingering close.** A refusal (413, 400, 415) often comes while the client is still sending. Closing
///   then makes the kernel answer the unread bytes with a reset, and a client that writes its whole body
///   before reading (Python's `http.client`, Logstash's output, most libraries) sees the reset, not the
///   413; a reset is retriable, so it would send the same oversized request forever. So, as nginx does:
///   after the response the output is shut down (the client reads the answer and then end of file), and
///   what the client still sends is read and thrown away, without reaching Hummingbird, until the request
///   ends, the client closes, or a bound is hit (`Linger`): then the connection closes.
/// - **`Expect: 100-continue`.** A request that announces a body over `maxBodyBytes` gets no `100 Continue`:
///   the handler answers 413 at once, before the body. Any other such request gets `100 Continue` as soon
///   as its head arrives, so the client does not wait for its own timeout (curl waits a second).
///
/// A response without `Connection: close` to a request that is complete leaves the connection alone.
final class RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The bounds of a lingering close: whichever comes first ends it.
    struct Linger: Sendable, Hashable {
        /// Most bytes of body read and thrown away. A client sending more is cut (a reset).
        var maxBytes: Int
        /// Most time from the response to the close.
        var maxTime: TimeAmount
        /// Most time without a byte from the client.
        var maxIdle: TimeAmount

        /// nginx's `lingering_time` (30 s) and `lingering_timeout` (5 s); bytes: four times the body
        /// limit, at least 64 MiB, so a client that ignores the limit by a wide margin is still answered.
        init(maxBodyBytes: Int, requestTimeout: TimeAmount) {
            maxBytes = max(64 << 20, maxBodyBytes.multipliedReportingOverflow(by: 4).overflow ? .max : maxBodyBytes * 4)
            maxTime = min(requestTimeout, .seconds(30))
            maxIdle = .seconds(5)
        }

        init(maxBytes: Int, maxTime: TimeAmount, maxIdle: TimeAmount) {
            self.maxBytes = maxBytes
            self.maxTime = maxTime
            self.maxIdle = maxIdle
        }
    }

    private enum State {
        /// Between requests: the last request is complete.
        case idle
        /// A request's head came and its end has not.
        case receiving
        /// A `Connection: close` response was written while the request was still arriving.
        case lingering(discarded: Int)
    }

    private let deadline: TimeAmount
    private let maxBodyBytes: Int
    private let linger: Linger
    private var state = State.idle
    /// When the request under way must be complete; nil between requests.
    private var requestDeadline: NIODeadline?
    /// Armed for some request's deadline, at or before `requestDeadline`. Not moved per request: when it
    /// fires for a request that has ended, it is armed again for the one under way, if any. A timer per
    /// request (scheduled at its head, cancelled at its end) cost a task, a promise and a cancelled future
    /// each, about 3 % of an event loop's time under single-event requests.
    private var requestTimer: Scheduled<Void>?
    private var lingerTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var closeAfterResponse = false
    /// Completes once the answer that started the linger is written.
    private var answerWritten: EventLoopFuture<Void>?

    init(deadline: TimeAmount, maxBodyBytes: Int, linger: Linger? = nil) {
        self.deadline = deadline
        self.maxBodyBytes = maxBodyBytes
        self.linger = linger ?? Linger(maxBodyBytes: maxBodyBytes, requestTimeout: deadline)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .lingering(let discarded) = state {
            switch part {
            case .head:
                scheduleIdle(context)
            case .body(let bytes):
                let total = discarded + bytes.readableBytes
                state = .lingering(discarded: total)
                if total > linger.maxBytes { closeAfterAnswer(context) } else { scheduleIdle(context) }
            case .end:
                // The client sent all it meant to; it reads the answer next.
                closeAfterAnswer(context)
            }
            return
        }
        switch part {
        case .head(let head):
            state = .receiving
            let due = context.eventLoop.now + deadline
            requestDeadline = due
            if requestTimer == nil { armRequestTimer(context, at: due) }
            if Self.expectsContinue(head), !announcesTooLarge(head) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
            }
        case .end:
            state = .idle
            requestDeadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // While lingering nothing above asks for more bytes; keep reading until a bound ends it.
        context.fireChannelReadComplete()
        if case .lingering = state { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if HTTPToken.closes(head.headerFields[.connection]) { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard closeAfterResponse else {
                context.writeAndFlush(data, promise: promise)
                return
            }
            closeAfterResponse = false
            guard case .receiving = state else {
                context.writeAndFlush(data, promise: promise)
                context.close(promise: nil)
                return
            }
            startLingering(context, end: data, promise: promise)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A malformed byte after the answer (the decoder's error) ends the linger; before, Hummingbird answers it.
        if case .lingering = state { closeAfterAnswer(context) } else { context.fireErrorCaught(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for timer in [requestTimer, lingerTimer, idleTimer] { timer?.cancel() }
        requestTimer = nil
        requestDeadline = nil
        lingerTimer = nil
        idleTimer = nil
        answerWritten = nil
        context.fireChannelInactive()
    }

    // MARK: Internals

    private func armRequestTimer(_ context: ChannelHandlerContext, at due: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        requestTimer = context.eventLoop.scheduleTask(deadline: due) { loopBound.value.0.requestTimerFired(loopBound.value.1) }
    }

    /// Cuts the request under way if its deadline has passed, else waits for it; between requests the
    /// next head arms the timer.
    private func requestTimerFired(_ context: ChannelHandlerContext) {
        requestTimer = nil
        guard let due = requestDeadline else { return }
        if context.eventLoop.now >= due {
            context.close(promise: nil)
        } else {
            armRequestTimer(context, at: due)
        }
    }

    private func startLingering(_ context: ChannelHandlerContext, end: NIOAny, promise: EventLoopPromise<Void>?) {
        state = .lingering(discarded: 0)
        requestTimer?.cancel()
        requestTimer = nil
        requestDeadline = nil
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        lingerTimer = context.eventLoop.scheduleTask(in: linger.maxTime) { loopBound.value.0.closeAfterAnswer(loopBound.value.1) }
        scheduleIdle(context)
        let written = context.eventLoop.makePromise(of: Void.self)
        if let promise { written.futureResult.cascade(to: promise) }
        answerWritten = written.futureResult
        context.writeAndFlush(end, promise: written)
        // The output ends after the answer: a client that reads until end of file gets it. Channels that
        // cannot half-close (some TLS stacks) just keep the output open until the close.
        written.futureResult.whenSuccess { loopBound.value.1.close(mode: .output, promise: nil) }
        context.read()
    }

    private func scheduleIdle(_ context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: linger.maxIdle) { loopBound.value.0.closeAfterAnswer(loopBound.value.1) }
    }

    /// Ends a linger: closes once the answer is out (a close before would drop it).
    private func closeAfterAnswer(_ context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        if let answerWritten {
            answerWritten.whenComplete { _ in loopBound.value.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    private static func expectsContinue(_ head: HTTPRequest) -> Bool {
        head.headerFields[.expect].map { HTTPToken.equals(Substring($0), "100-continue") } ?? false
    }

    private func announcesTooLarge(_ head: HTTPRequest) -> Bool {
        guard let length = head.headerFields[.contentLength].flatMap({ Int($0) }) else { return false }
        return length > maxBodyBytes
    }
}
