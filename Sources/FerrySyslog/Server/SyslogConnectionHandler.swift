import FerryWire
import Logging
import NIOCore
import NIOExtras

/// One syslog TCP (or TLS) connection, after `SyslogFrameDecoder`: parses each frame into the next batch and
/// hands batches to the store, one call at a time.
///
/// Backpressure: while a store call runs, the connection keeps reading only until the next batch holds
/// `maxBatchBytes`; then it holds back `read()` until the call returns. So a full queue (a store call that
/// waits) pauses the sender through TCP's own flow control, with at most two batches in memory.
///
/// What was received is stored even when the connection ends: at EOF, after a malformed frame, at idle
/// timeout and at the server's shutdown (`ChannelShouldQuiesceEvent`) the gathered batch still goes to the
/// store. Only a failing store call loses its batch (counted; plain syslog has no acknowledgement).
final class SyslogConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private let store: SyslogStore
    private let metrics: InputMetrics
    private let maxBatchBytes: Int
    private var logger: Logger
    private var parser: SyslogParser
    private var sourceIP: [UInt8]?
    private var pending = SyslogEventBatch()
    private var storing = false
    private var readPending = false
    private var closing = false

    init(store: @escaping SyslogStore, metrics: InputMetrics, maxBatchBytes: Int, parser: SyslogParser, logger: Logger) {
        self.store = store
        self.metrics = metrics
        self.maxBatchBytes = maxBatchBytes
        self.parser = parser
        self.logger = logger
    }

    private var readsAllowed: Bool { !closing && !(storing && pending.receivedBytes >= maxBatchBytes) }

    func channelActive(context: ChannelHandlerContext) {
        if let address = context.channel.remoteAddress?.ipAddress {
            sourceIP = Array(address.utf8)
            logger[metadataKey: "ferry.input.peer"] = "\(address)"
        }
        metrics.connectionsAccepted?.increment()
        metrics.connectionsOpen?.increment()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let now = currentTimeMilliseconds()
        let result = frame.withUnsafeReadableBytes { pending.append($0, parser: &parser, sourceIP: sourceIP, now: now) }
        if let result { metrics.parsed(result) }
        if !storing, pending.receivedBytes >= maxBatchBytes { startStore(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !storing, !pending.isEmpty { startStore(context: context) }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if readsAllowed { context.read() } else { readPending = true }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if !storing, !pending.isEmpty { startStore(context: context) }
        metrics.connectionsOpen?.decrement()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            closeWhenStored(context: context)
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            // A connection paused by backpressure reads nothing on purpose: not idle.
            if !storing {
                logger.debug("Closing an idle syslog connection")
                closeWhenStored(context: context)
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let frameError = error as? SyslogFrameError {
            metrics.refused(frameError.kind.rawValue)
            logger.warning("Closing a syslog connection after a malformed frame", metadata: ["ferry.input.error": "\(frameError)"])
        } else {
            logger.debug("Closing a syslog connection after an error", metadata: ["ferry.input.error": "\(error)"])
        }
        closeWhenStored(context: context)
    }

    /// Stops reading; closes once what was gathered is stored.
    private func closeWhenStored(context: ChannelHandlerContext) {
        closing = true
        if storing { return }
        if !pending.isEmpty {
            startStore(context: context)
        } else {
            context.close(promise: nil)
        }
    }

    private func startStore(context: ChannelHandlerContext) {
        let batch = pending
        pending = SyslogEventBatch()
        storing = true
        let store = self.store
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.completeWithTask { try await store(batch) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { result in
            let (handler, context) = bound.value
            handler.stored(batch, result: result, context: context)
        }
    }

    private func stored(_ batch: SyslogEventBatch, result: Result<Void, any Error>, context: ChannelHandlerContext) {
        storing = false
        switch result {
        case .success:
            metrics.stored(batch)
        case .failure(let error):
            metrics.storeFailures.increment()
            logger.error("Could not store syslog messages; closing the connection", metadata: [
                "ferry.input.error": "\(error)", "ferry.input.messages": "\(batch.count)",
            ])
            closing = true
            pending = SyslogEventBatch()
            context.close(promise: nil)
            return
        }
        if !pending.isEmpty {
            startStore(context: context)
        } else if closing {
            context.close(promise: nil)
        }
        if readPending, readsAllowed {
            readPending = false
            context.read()
        }
    }
}
