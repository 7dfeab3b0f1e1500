import NIOCore

/// On a listening channel: at most `maxConnections` accepted connections open at once. At the limit it stops
/// accepting (holds back `read()` on the listening socket), so further senders wait in the kernel's listen
/// backlog until a connection closes, as the http input does; a connection accepted in the same burst as
/// the one that reached the limit is closed at once and counted (`connection_limit`).
final class ConnectionLimiter: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let limits: LiveLimits
    private let metrics: InputMetrics
    private var open = 0
    private var readPending = false

    /// Read at each accept and close: a reload changes it for the listener that runs.
    private var maxConnections: Int { limits.current.maxConnections }

    init(limits: LiveLimits, metrics: InputMetrics) {
        self.limits = limits
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        guard open < maxConnections else {
            metrics.refused("connection_limit")
            child.close(promise: nil)
            return
        }
        open += 1
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        child.closeFuture.hop(to: context.eventLoop).whenComplete { _ in
            let (handler, context) = bound.value
            handler.open -= 1
            if handler.readPending, handler.open < handler.maxConnections {
                handler.readPending = false
                context.read()
            }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if open < maxConnections { context.read() } else { readPending = true }
    }
}
