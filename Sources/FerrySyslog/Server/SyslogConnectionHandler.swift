import FerryWire
import Logging
import NIOCore
import NIOExtras

/// One syslog TCP (or TLS) connection: frames and parses each read into the next batch (`SyslogStreamReader`)
/// and hands batches to the store, one call at a time.
///
/// Backpressure: while a store call runs, the connection keeps reading only until the next batch holds
/// `maxBatchBytes`; then it holds back `read()` until the call returns. So a full queue (a store call that
/// waits) pauses the sender through TCP's own flow control, with at most two batches in memory (the check runs
/// once per read, so a batch can pass `maxBatchBytes` by one read), one read and the start of one frame.
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
    private var reader: SyslogStreamReader
    private var sourceIP: [UInt8]?
    private var storing = false
    private var readPending = false
    private var closing = false
    /// Nothing more of the stream is framed: a malformed frame was read, or a store call failed.
    private var failed = false

    init(store: @escaping SyslogStore, metrics: InputMetrics, maxBatchBytes: Int, maxMessageSize: Int, parser: SyslogParser, logger: Logger) {
        self.store = store
        self.metrics = metrics
        self.maxBatchBytes = maxBatchBytes
        self.reader = SyslogStreamReader(maxMessageSize: maxMessageSize, parser: parser)
        self.logger = logger
    }

    private var readsAllowed: Bool { !closing && !(storing && reader.pending.receivedBytes >= maxBatchBytes) }

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
        // After a malformed frame nothing more of the stream is read (the connection is closing).
        guard !failed else { return }
        let metrics = self.metrics
        let malformed = reader.read(unwrapInboundIn(data), sourceIP: sourceIP, now: currentTimeMilliseconds()) { metrics.parsed($0) }
        if let malformed {
            refuse(malformed, context: context)
        } else if !storing, reader.pending.receivedBytes >= maxBatchBytes {
            startStore(context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !storing, !reader.pending.isEmpty { startStore(context: context) }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if readsAllowed { context.read() } else { readPending = true }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if !failed {
            // The connection is gone (the peer's EOF, or our close at idle timeout or shutdown): an
            // unterminated last line is a message; a cut octet-counted frame is not.
            let metrics = self.metrics
            if let malformed = reader.finish(sourceIP: sourceIP, now: currentTimeMilliseconds(), parsed: { metrics.parsed($0) }) {
                count(malformed, "A syslog connection closed inside a frame")
            }
        }
        if !storing, !reader.pending.isEmpty { startStore(context: context) }
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
        logger.debug("Closing a syslog connection after an error", metadata: ["ferry.input.error": "\(error)"])
        closeWhenStored(context: context)
    }

    /// A malformed frame: counted, and the connection closes once what came before it is stored.
    private func refuse(_ kind: SyslogFrameError.Kind, context: ChannelHandlerContext) {
        count(kind, "Closing a syslog connection after a malformed frame")
        closeWhenStored(context: context)
    }

    /// Stops framing the stream, counts the malformed frame by kind and logs it.
    private func count(_ kind: SyslogFrameError.Kind, _ message: Logger.Message) {
        failed = true
        metrics.refused(kind.rawValue)
        logger.warning(message, metadata: ["ferry.input.error": "\(SyslogFrameError(kind, maxMessageSize: reader.maxMessageSize))"])
    }

    /// Stops reading; closes once what was gathered is stored.
    private func closeWhenStored(context: ChannelHandlerContext) {
        closing = true
        if storing { return }
        if !reader.pending.isEmpty {
            startStore(context: context)
        } else {
            context.close(promise: nil)
        }
    }

    private func startStore(context: ChannelHandlerContext) {
        let batch = reader.takePending()
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
            failed = true
            _ = reader.takePending()
            context.close(promise: nil)
            return
        }
        if !reader.pending.isEmpty {
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
