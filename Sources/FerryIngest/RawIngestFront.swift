import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// The first handler of an ingest connection (after TLS): a `POST /` that arrives whole in what one read
/// gives, with a plain head (`SimpleRequest`), is decoded, stored and answered here on the raw bytes,
/// without NIO's HTTP/1 decoder and encoder, the HTTP types' conversion and the handlers between them
/// (`RequestGuard`, Hummingbird's connection state, `FastIngest`). The first bytes that are not such a
/// request turn this handler into a pass-through for the rest of the connection: they go up to that
/// pipeline as they came, and its answers come back down through here.
///
/// Why: a profile of single-event requests (`tools/bench/ingest`) spent about half of the ingest's user
/// CPU in that pipeline: llhttp and its callbacks, `HTTPHeaders` made into `HTTPFields`, three parts up and
/// three down through six handlers, each wrapped in a `NIOAny`. Measured in docs/RESULTS.md.
///
/// The checks and answers are `IngestHandler`'s (`begin`, `store`, `answer`), as on the other paths. A
/// request is taken only at a boundary: nothing was passed up before it. While its answer is under way,
/// what arrives (bytes, events) is held, no more is read, and it is looked at in order after the answer.
/// Events are passed up as they come (a TLS handshake's end, a half-close, a graceful close); they end
/// nothing here. An answer that closes (`Connection: close` after a refusal) closes after it is written:
/// the whole body was read, so no lingering is needed. Once the connection is closing in the fast mode
/// (that answer, or a close from above: the idle timeout, a graceful shutdown; with TLS, decrypted bytes
/// still arrive while its shutdown runs), nothing more is read, taken or passed up: a request stored
/// then could not be answered. After the fast mode, closes are the pipeline's alone. The idle timeout
/// hears of these requests (`ConnectionIdleTimeout`), as Hummingbird's graceful close does through the events.
final class RawIngestFront: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Held {
        case bytes(ByteBuffer)
        case event(Any)
    }

    private let handler: IngestHandler
    private let serverName: String?
    private let coalescer: IngestCoalescer?
    private let idle: ConnectionIdleTimeout?
    /// Requests are taken here (false: everything goes through, for good).
    private var fast = true
    /// The connection is closing: what arrives is dropped, nothing more is read.
    private var closing = false
    /// An answer of this path is under way.
    private var answering = false
    /// What came while an answer was under way, in order.
    private var held = CircularBuffer<Held>()
    private var readPending = false
    private var active = true

    init(handler: IngestHandler, serverName: String?, coalescer: IngestCoalescer?, idle: ConnectionIdleTimeout?) {
        self.handler = handler
        self.serverName = serverName
        self.coalescer = coalescer
        self.idle = idle
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        guard fast else { return context.fireChannelRead(data) }
        let bytes = unwrapInboundIn(data)
        if holding {
            held.append(.bytes(bytes))
        } else {
            take(context, bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !fast { context.fireChannelReadComplete() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if holding {
            held.append(.event(event))
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func read(context: ChannelHandlerContext) {
        guard !closing else { return }
        if holding && !held.isEmpty {
            readPending = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Closing the output (or all) leaves no way to answer: take nothing more. Once everything goes
        // through, the pipeline above decides alone (`RequestGuard` half-closes and keeps reading to linger).
        if fast && mode != .input { startClosing() }
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closed()
    }

    // MARK: Internals

    /// An answer of this path is under way, or what came meanwhile is not looked at yet.
    private var holding: Bool { fast && (answering || !held.isEmpty) }

    private func closed() {
        active = false
        held.removeAll()
    }

    private func startClosing() {
        closing = true
        fast = false
        held.removeAll()
        readPending = false
    }

    /// Takes the whole plain request at the start of `bytes`, or passes everything up from now on.
    private func take(_ context: ChannelHandlerContext, _ bytes: ByteBuffer) {
        var bytes = bytes
        guard let request = SimpleRequest.parse(&bytes, maxBodyBytes: FastIngest.maxBodyBytes) else {
            fast = false
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
            return
        }
        if bytes.readableBytes > 0 { held.prepend(.bytes(bytes)) }
        answering = true
        idle?.requestBegan()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        var upload: IngestHandler.Upload
        do {
            upload = try handler.begin(request.head)
            try upload.consume(request.body)
        } catch {
            // Answered from a task of its own, as a stored request is: never from inside `answered`'s
            // loop over what was held (a read of many refused requests would nest one call per request).
            let refusal = IngestError.refusal(error)
            loop.execute { bound.value.0.answered(bound.value.1, .failure(refusal)) }
            return
        }
        handler.store(upload, coalescer: coalescer) { outcome in
            loop.execute { bound.value.0.answered(bound.value.1, outcome) }
        }
    }

    /// The outcome of a request taken here: answer it, then go on with what arrived meanwhile.
    private func answered(_ context: ChannelHandlerContext, _ outcome: Result<(events: Int, duplicate: Bool), IngestError>) {
        let answer = handler.answer(outcome, peer: active ? context.channel.remoteAddress : nil)
        guard active else { return }  // the client went away; what was committed stays stored
        answering = false
        let written = context.writeAndFlush(wrapOutboundOut(.byteBuffer(encode(answer, allocator: context.channel.allocator))))
        idle?.requestEnded()
        if HTTPToken.closes(answer.headers[.connection]) {
            // A refusal that ends the connection: nothing more is read, taken or passed up.
            startClosing()
            written.whenComplete { _ in context.close(promise: nil) }
            return
        }
        while fast && !answering && !closing, let next = held.popFirst() {
            switch next {
            case .bytes(var bytes):
                // Consecutive reads held together: a request may span them.
                while case .bytes(var more) = held.first {
                    bytes.writeBuffer(&more)
                    held.removeFirst()
                }
                take(context, bytes)
            case .event(let event):
                context.fireUserInboundEventTriggered(event)
            }
        }
        if !fast && !closing {
            // What is left goes up as it came.
            var passed = false
            while let next = held.popFirst() {
                switch next {
                case .bytes(let bytes):
                    context.fireChannelRead(wrapInboundOut(bytes))
                    passed = true
                case .event(let event):
                    context.fireUserInboundEventTriggered(event)
                }
            }
            if passed { context.fireChannelReadComplete() }
        }
        if !holding && !closing && readPending {
            readPending = false
            context.read()
        }
    }

    /// The answer as HTTP/1.1 bytes, with what Hummingbird adds to an answer: length, date, server.
    private func encode(_ answer: IngestHandler.Answer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 256 + answer.body.utf8.count)
        // The reason phrase NIO's encoder writes for the same status (the standard one of a known code).
        let status = HTTPResponseStatus(statusCode: answer.status.code, reasonPhrase: answer.status.reasonPhrase)
        out.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        for field in answer.headers {
            out.writeString(field.name.rawName)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("Content-Length: ")
        out.writeString(String(answer.body.utf8.count))
        out.writeStaticString("\r\nDate: ")
        out.writeString(HTTPDate.now())
        if let serverName {
            out.writeStaticString("\r\nServer: ")
            out.writeString(serverName)
        }
        out.writeStaticString("\r\n\r\n")
        out.writeString(answer.body)
        return out
    }
}

/// The ingest's idle timeout, in place of Hummingbird's (whose handler cannot hear of the requests
/// `RawIngestFront` takes below it): a connection with no request under way and nothing read for
/// `timeout` is closed. Sees the requests Hummingbird's pipeline carries as that handler does (placed
/// right after it), and is told of the ones taken below (`requestBegan`, `requestEnded`). The rules are
/// Hummingbird's: the clock runs from the last part read or answer written; while a request is read it
/// may expire (a stalled upload), while its answer is under way it does not.
final class ConnectionIdleTimeout: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: TimeAmount
    private var lastActive = NIODeadline.now()
    private var inProgress = 0
    private var reading = false
    private var scheduled: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { schedule(at: .now() + timeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        schedule(at: .now() + timeout)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActive = .now()
        switch unwrapInboundIn(data) {
        case .head:
            reading = true
            inProgress += 1
        case .body: break
        case .end: reading = false
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { ended() }
        context.write(data, promise: promise)
    }

    /// A request taken below, read whole.
    func requestBegan() {
        lastActive = .now()
        inProgress += 1
    }

    /// The answer to a request taken below, written.
    func requestEnded() { ended() }

    private func ended() {
        inProgress = max(0, inProgress - 1)
        lastActive = .now()
        if inProgress == 0 { schedule(at: lastActive + timeout) }
    }

    private func schedule(at deadline: NIODeadline) {
        guard scheduled == nil, let context else { return }
        scheduled = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) { [self] in
            scheduled = nil
            expired()
        }
    }

    private func expired() {
        guard let context, context.channel.isActive else { return }
        // An answer under way (its request read whole): not idle; the answer's end schedules again.
        if !reading && inProgress > 0 { return }
        if NIODeadline.now() >= lastActive + timeout {
            context.close(promise: nil)
        } else {
            schedule(at: lastActive + timeout)
        }
    }
}

/// A request this path takes: `POST / HTTP/1.1`, a head of well-formed fields (CRLF line ends, no folded
/// lines, at most `maxFields`, at most `maxHeadBytes`), one `Content-Length` of at most the fast path's
/// body limit, no `Transfer-Encoding`, `Expect`, `Upgrade` nor `Connection` other than `keep-alive`, and
/// the whole body present. Anything else is not refused here: NIO's HTTP/1 decoder decides on it.
struct SimpleRequest {
    static let maxHeadBytes = 8 << 10
    static let maxFields = 64

    var head: RequestHead
    var body: ByteBuffer

    /// The plain request at the start of `buffer`, whose reader index then moves past it; nil (and
    /// `buffer` untouched) when there is none.
    static func parse(_ buffer: inout ByteBuffer, maxBodyBytes: Int) -> SimpleRequest? {
        let parsed: (head: RequestHead, headBytes: Int, length: Int)? = buffer.withUnsafeReadableBytes { raw in
            parseHead(raw, maxBodyBytes: maxBodyBytes)
        }
        guard let parsed, buffer.readableBytes - parsed.headBytes >= parsed.length else { return nil }
        buffer.moveReaderIndex(forwardBy: parsed.headBytes)
        let body = buffer.readSlice(length: parsed.length)!
        return SimpleRequest(head: parsed.head, body: body)
    }

    private static let requestLine = Array("POST / HTTP/1.1\r\n".utf8)

    private static func parseHead(_ raw: UnsafeRawBufferPointer, maxBodyBytes: Int) -> (RequestHead, Int, Int)? {
        guard raw.count >= requestLine.count, raw.prefix(requestLine.count).elementsEqual(requestLine) else { return nil }
        var head = RequestHead()
        var length: Int?
        var position = requestLine.count
        var fields = 0
        let end = min(raw.count, maxHeadBytes)
        while true {
            // A line: up to CR LF.
            guard let cr = (position..<end).first(where: { raw[$0] == UInt8(ascii: "\r") }), cr + 1 < end, raw[cr + 1] == UInt8(ascii: "\n") else {
                return nil
            }
            if cr == position {  // the empty line: the head ends
                guard let length else { return nil }
                return (head, cr + 2, length)
            }
            fields += 1
            guard fields <= maxFields else { return nil }
            guard let colon = (position..<cr).first(where: { raw[$0] == UInt8(ascii: ":") }), colon > position,
                  (position..<colon).allSatisfy({ isTokenByte(raw[$0]) })
            else { return nil }
            // The value as the other path's `HTTPFields` give it: without the spaces and tabs around it
            // (`SimpleRequestTests` compares the two).
            var first = colon + 1
            var last = cr
            while first < last, HTTPToken.isSpace(raw[first]) { first += 1 }
            guard (first..<last).allSatisfy({ isValueByte(raw[$0]) }) else { return nil }
            let untrimmedEnd = last
            while last > first, HTTPToken.isSpace(raw[last - 1]) { last -= 1 }
            let name = UnsafeRawBufferPointer(rebasing: raw[position..<colon])
            let value = UnsafeRawBufferPointer(rebasing: raw[first..<last])
            switch lowercased(name) {
            case "content-length":
                // Digits only, nothing after them (llhttp refuses a tab there): stricter than the decoder.
                guard length == nil, !value.isEmpty, value.count <= 9, last == untrimmedEnd,
                      value.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 })
                else { return nil }
                let announced = value.reduce(0) { $0 * 10 + Int($1 &- UInt8(ascii: "0")) }
                guard announced <= maxBodyBytes else { return nil }
                length = announced
                head.contentLength = String(decoding: value, as: UTF8.self)
            case "content-type": add(value, to: &head.contentType)
            case "content-encoding": add(value, to: &head.contentEncoding)
            case "authorization": add(value, to: &head.authorization)
            case "ferry-batch": add(value, to: &head.batch)
            case "connection":
                guard HTTPToken.equals(Substring(decoding: value, as: UTF8.self), "keep-alive") else { return nil }
            case "transfer-encoding", "expect", "upgrade": return nil
            default: break
            }
            position = cr + 2
        }
    }

    private static func add(_ value: UnsafeRawBufferPointer, to slot: inout String?) {
        RequestHead.add(String(decoding: value, as: UTF8.self), to: &slot)
    }

    /// The field name in lower case, for the few names looked at (others need not be exact).
    private static func lowercased(_ name: UnsafeRawBufferPointer) -> String {
        guard name.count <= 20 else { return "" }
        return String(unsafeUninitializedCapacity: name.count) { out in
            for (index, byte) in name.enumerated() { out[index] = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte }
            return name.count
        }
    }

    /// RFC 9110's `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A field value's byte: visible ASCII, obs-text, space or tab.
    private static func isValueByte(_ byte: UInt8) -> Bool { byte >= 0x20 && byte != 0x7F || byte == 0x09 }
}
