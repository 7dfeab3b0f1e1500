import FerryWire
import Logging
import NIOCore
import NIOExtras

/// One RELP connection, after `RELPFrameDecoder`: drives a `RELPSession` and carries out its actions —
/// writes its answers, hands its batches to the store (parsed into events here, at the start of the call),
/// holds back `read()` while the session says so, and closes when it says so.
final class RELPConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = RELPFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var session: RELPSession
    private let store: SyslogStore
    private let metrics: InputMetrics
    private var logger: Logger
    private var parser: SyslogParser
    private var sourceIP: [UInt8]?
    private var readPending = false

    init(session: RELPSession, store: @escaping SyslogStore, metrics: InputMetrics, parser: SyslogParser, logger: Logger) {
        self.session = session
        self.store = store
        self.metrics = metrics
        self.parser = parser
        self.logger = logger
    }

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
        perform(session.received(unwrapInboundIn(data)), context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        perform(session.readComplete(), context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if session.readsAllowed { context.read() } else { readPending = true }
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.connectionClosed()
        metrics.connectionsOpen?.decrement()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            perform(session.quiesce(), context: context)
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if session.isIdle {
                logger.debug("Closing an idle RELP session")
                perform(session.quiesce(), context: context)
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let relpError = error as? RELPProtocolError {
            perform(session.malformed(relpError), context: context)
        } else {
            logger.debug("Closing a RELP connection after an error", metadata: ["ferry.input.error": "\(error)"])
            session.connectionClosed()
            context.close(promise: nil)
        }
    }

    private func perform(_ actions: RELPSession.Actions, context: ChannelHandlerContext) {
        if let error = actions.error {
            metrics.refused(error.kind.rawValue)
            logger.warning("Ending a RELP session after a protocol error", metadata: ["ferry.input.error": "\(error)"])
        }
        if let messages = actions.store { startStore(messages, context: context) }
        if !actions.send.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: 16 * actions.send.count)
            for output in actions.send { output.write(to: &buffer) }
            let written = context.writeAndFlush(wrapOutboundOut(buffer))
            if actions.close {
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.whenComplete { _ in bound.value.close(promise: nil) }
            }
        } else if actions.close {
            context.close(promise: nil)
        }
        if readPending, session.readsAllowed {
            readPending = false
            context.read()
        }
    }

    private func startStore(_ messages: [RELPSession.Message], context: ChannelHandlerContext) {
        var batch = SyslogEventBatch()
        let now = currentTimeMilliseconds()
        for message in messages {
            let result = message.data.withUnsafeReadableBytes { batch.append($0, parser: &parser, sourceIP: sourceIP, now: now) }
            if let result { metrics.parsed(result) }
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        guard !batch.isEmpty else {
            // Only empty messages: nothing to commit, answer them at once (on the next loop turn, as a store would).
            context.eventLoop.execute {
                let (handler, context) = bound.value
                handler.perform(handler.session.storeSucceeded(), context: context)
            }
            return
        }
        let store = self.store
        let events = batch
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.completeWithTask { try await store(events) }
        promise.futureResult.whenComplete { result in
            let (handler, context) = bound.value
            handler.stored(events, result: result, context: context)
        }
    }

    private func stored(_ batch: SyslogEventBatch, result: Result<Void, any Error>, context: ChannelHandlerContext) {
        switch result {
        case .success:
            metrics.stored(batch)
            perform(session.storeSucceeded(), context: context)
        case .failure(let error):
            metrics.storeFailures.increment()
            logger.error("Could not store RELP messages; ending the session unanswered (the client sends them again)", metadata: [
                "ferry.input.error": "\(error)", "ferry.input.messages": "\(batch.count)",
            ])
            perform(session.storeFailed(), context: context)
        }
    }
}
