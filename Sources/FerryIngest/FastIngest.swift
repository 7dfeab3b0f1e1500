import FerryQueue
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOHTTP1

/// The ingest's event-loop path: a `POST /` with a body of at most `maxBodyBytes` announced by
/// `Content-Length` is decoded here as its parts arrive, on the connection's event loop, appended through
/// the intake with a completion, and answered from the event loop when the queue's writer has committed
/// it. Any other request goes up to Hummingbird's router, as before.
///
/// Why: a durable single-event request through Hummingbird crossed four threads (the event loop, a task
/// on Swift's pool for the connection's request loop, the queue's writer, the pool again, the event loop
/// for the answer) and cost about twice the CPU of a bare Hummingbird server that stores nothing. Here it
/// crosses two (the event loop, the writer, the event loop). The checks and the answers are the same
/// (`IngestHandler.begin`, `store`, `answer`), so both paths refuse and count alike.
///
/// Sits above Hummingbird's `HTTPConnectionStateHandler` (`IngestChannel`), which therefore still sees
/// every request and answer: its idle timeout and its close at a graceful shutdown (after the answer to a
/// request in flight) hold for requests taken here. `RequestGuard` sits below: the request deadline, the
/// `100 Continue` and the lingering close after a refusal hold too.
///
/// Order of answers (HTTP/1.1 pipelining): a request is taken here only when Hummingbird owes no answer;
/// while an answer of this path is under way, what arrives (request parts, the client's half-close, a
/// parse error) is held, no more is read once something is held, and it is replayed after the answer, in
/// order. Reads go on while nothing is held: holding every read back for the answer made NIO drop the
/// socket's read interest after each request and ask for it again after the answer, two `epoll_ctl`
/// calls per request (~3 % of an event loop's time under single-event requests); what can arrive meanwhile
/// is one read's worth of parts (a client that pipelines). After a request
/// that asks for `Connection: close`, or an answer that closes, nothing more is taken here.
final class FastIngest: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The largest body (by `Content-Length`) decoded on the event loop: a larger one, or one without a
    /// length (chunked), would hold the loop's other connections while it inflates, and goes to Hummingbird.
    static let maxBodyBytes = 256 << 10

    private enum State {
        case idle
        /// A request for Hummingbird: its parts go up until its end.
        case passing
        /// A request taken here, its body being decoded.
        case receiving(IngestHandler.Upload)
        /// A request taken here and already answered with a refusal: the rest of its body is dropped.
        case discarding
        /// A request taken here, complete: its append or answer is under way.
        case answering
        /// The connection ends after the answers under way: everything goes up to Hummingbird (which
        /// stops at a `Connection: close` request), nothing is taken here.
        case closing
    }

    /// What arrived while an answer was under way, replayed after it in the order it came.
    private enum Held {
        case part(HTTPRequestPart)
        /// The client's half-close (`ChannelEvent.inputClosed`), or any other inbound event.
        case event(Any)
        /// The HTTP decoder's error: Hummingbird answers 400 and closes, which must come after this answer.
        case error(any Error)
    }

    private let handler: IngestHandler
    private let serverName: String?
    /// Packs this loop's small uploads into one append (nil: each is appended alone).
    private let coalescer: IngestCoalescer?
    private var state = State.idle
    /// Answers Hummingbird owes: requests passed up whose answer has not ended yet.
    private var owed = 0
    /// What arrived while an answer of this path was under way, replayed after it.
    private var held = CircularBuffer<Held>()
    /// A read asked for while parts were held: done once they are replayed.
    private var readPending = false
    private var active = true

    init(handler: IngestHandler, serverName: String?, coalescer: IngestCoalescer? = nil) {
        self.handler = handler
        self.serverName = serverName
        self.coalescer = coalescer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if holding {
            held.append(.part(part))
        } else {
            process(context, part)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if holding {
            held.append(.event(event))
        } else {
            deliver(context, event: event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if holding {
            held.append(.error(error))
        } else {
            deliver(context, error: error)
        }
    }

    func read(context: ChannelHandlerContext) {
        if held.isEmpty {
            context.read()
        } else {
            readPending = true
        }
    }

    /// An answer of this path is under way, or what came meanwhile is not replayed yet.
    private var holding: Bool {
        if case .answering = state { return true }
        return !held.isEmpty
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { owed = max(0, owed - 1) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Hummingbird's connection-state handler below does not pass channelInactive on: the pipeline's
        // teardown at the close is what this handler sees.
        closed()
    }

    // MARK: Internals

    private func deliver(_ context: ChannelHandlerContext, event: Any) {
        if case .receiving = state, let event = event as? ChannelEvent, event == .inputClosed {
            // The client stopped sending mid-body: that request can never end.
            handler.aborted(ChannelError.eof)
            state = .closing
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func deliver(_ context: ChannelHandlerContext, error: any Error) {
        if case .receiving = state {
            handler.aborted(error)
            state = .closing
        }
        context.fireErrorCaught(error)
    }

    private func closed() {
        guard active else { return }
        active = false
        held.removeAll()
        if case .receiving = state { handler.aborted(ChannelError.eof) }
        state = .idle
    }

    private func process(_ context: ChannelHandlerContext, _ part: HTTPRequestPart) {
        switch state {
        case .idle:
            guard case .head(let request) = part else {
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            let head = RequestHead(request.headerFields)
            guard owed == 0, Self.takes(request, head) else {
                owed += 1
                state = head.asksToClose ? .closing : .passing
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            do {
                state = .receiving(try handler.begin(head))
            } catch {
                state = .discarding
                respond(context, handler.answer(.failure(IngestError.refusal(error)), peer: context.channel.remoteAddress))
            }
        case .passing:
            if case .end = part { state = .idle }
            context.fireChannelRead(wrapInboundOut(part))
        case .receiving(var upload):
            switch part {
            case .body(let bytes):
                state = .idle  // the upload is mutated here, not copied
                do {
                    try upload.consume(bytes)
                    state = .receiving(upload)
                } catch {
                    state = .discarding
                    respond(context, handler.answer(.failure(IngestError.refusal(error)), peer: context.channel.remoteAddress))
                }
            case .end:
                state = .answering
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let loop = context.eventLoop
                handler.store(upload, coalescer: coalescer) { outcome in
                    loop.execute { bound.value.0.answered(bound.value.1, outcome) }
                }
            case .head:
                // The HTTP decoder never sends a head inside a request.
                context.close(promise: nil)
            }
        case .discarding:
            if case .end = part { state = .idle }
        case .answering:
            held.append(.part(part))
        case .closing:
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    /// The queue's outcome of a request taken here: answer it, then go on with what arrived meanwhile.
    private func answered(_ context: ChannelHandlerContext, _ outcome: Result<(events: Int, duplicate: Bool), IngestError>) {
        let answer = handler.answer(outcome, peer: active ? context.channel.remoteAddress : nil)
        guard active else { return }  // the client went away; what was committed stays stored
        respond(context, answer)
        // An answer that closes the connection (a refusal with `Connection: close`): `RequestGuard` closes
        // after it, so nothing held is taken here any more (it could be stored, never answered).
        state = HTTPToken.closes(answer.headers[.connection]) || !context.channel.isActive ? .closing : .idle
        let replayed = !held.isEmpty
        defer {
            // Parts passed up reach Hummingbird's request loop only with a read-complete: the async
            // channel's handler hands on what it buffered then.
            if replayed { context.fireChannelReadComplete() }
        }
        while let next = held.popFirst() {
            switch next {
            case .part(let part): process(context, part)
            case .event(let event): deliver(context, event: event)
            case .error(let error): deliver(context, error: error)
            }
            if case .answering = state { return }
        }
        if readPending {
            readPending = false
            context.read()
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ answer: IngestHandler.Answer) {
        let body = context.channel.allocator.buffer(string: answer.body)
        var headers = answer.headers  // holds none of these three: appended, not looked up
        headers.append(HTTPField(name: .contentLength, value: String(body.readableBytes)))
        headers.append(HTTPField(name: .date, value: HTTPDate.now()))
        if let serverName { headers.append(HTTPField(name: .server, value: serverName)) }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Whether a request is taken here: `POST /` whose body length is announced and small, on a connection
    /// that stays open (Hummingbird closes after a `Connection: close` request).
    private static func takes(_ request: HTTPRequest, _ head: RequestHead) -> Bool {
        guard request.method == .post, request.path == "/", head.transferEncoding == nil,
              let length = head.length, length <= maxBodyBytes
        else { return false }
        return !head.asksToClose
    }
}

/// Hummingbird's HTTP/1 child channel with `FastIngest` placed right above its connection-state handler
/// (`additionalChannelHandlers` go below it, where that handler would not see the requests taken).
struct IngestChannel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel
    /// The idle timeout (`ConnectionIdleTimeout`; `http1`'s own must be nil: it would not hear of the
    /// requests `RawIngestFront` takes).
    let idleTimeout: TimeAmount?
    /// The fast path of a connection on the given event loop.
    let makeFastPath: @Sendable (any EventLoop) -> FastIngest
    /// The raw front of a connection on the given event loop, told of its requests by the idle timeout.
    let makeFront: @Sendable (any EventLoop, ConnectionIdleTimeout?) -> RawIngestFront

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let connectionState = try operations.handler(type: HTTPConnectionStateHandler.self)
            let idle = idleTimeout.map { ConnectionIdleTimeout(timeout: $0) }
            if let idle { try operations.addHandler(idle, position: .after(connectionState)) }
            try operations.addHandler(makeFastPath(channel.eventLoop), position: .after(idle ?? connectionState))
            let encoder = try operations.handler(type: HTTPResponseEncoder.self)
            try operations.addHandler(makeFront(channel.eventLoop, idle), position: .before(encoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}
