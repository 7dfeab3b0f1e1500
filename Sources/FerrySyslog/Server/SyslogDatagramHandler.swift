import FerryWire
import Logging
import NIOCore
import NIOExtras
#if canImport(Glibc)
import Glibc
#endif

/// The syslog UDP socket: one datagram, one message. Parses datagrams into the next batch and hands batches
/// to the store one call at a time; while a call runs it reads until the next batch holds `maxBatchBytes`,
/// then stops reading — UDP has no flow control, so from then on the kernel drops what overflows the socket's
/// receive buffer. Those drops are counted: every second (and at close) the socket's drop counter is read
/// with `getsockopt(SO_MEMINFO)` — the same `sk_drops` that `SO_RXQ_OVFL` reports per datagram, which
/// SwiftNIO cannot surface because its control-message parser ignores `SOL_SOCKET` messages.
final class SyslogDatagramHandler: ChannelDuplexHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>

    private let store: SyslogStore
    private let metrics: InputMetrics
    private let maxBatchBytes: Int
    private let maxMessageSize: Int
    private let logger: Logger
    private var parser: SyslogParser
    private var pending = SyslogEventBatch()
    private var storing = false
    private var readPending = false
    private var closing = false
    private var lastSender: SocketAddress?
    private var lastSourceIP: [UInt8]?
    private var dropTimer: RepeatedTask?
    private var dropsSeen: UInt32 = 0

    init(store: @escaping SyslogStore, metrics: InputMetrics, limits: SyslogLimits, parser: SyslogParser, logger: Logger) {
        self.store = store
        self.metrics = metrics
        self.maxBatchBytes = limits.maxBatchBytes
        self.maxMessageSize = limits.maxMessageSize
        self.parser = parser
        self.logger = logger
    }

    private var readsAllowed: Bool { !closing && !(storing && pending.receivedBytes >= maxBatchBytes) }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        dropTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let (handler, context) = bound.value
            handler.countDrops(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        dropTimer?.cancel()
        dropTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        // The read buffer holds maxMessageSize + 1 bytes: a full one means the datagram was cut.
        guard datagram.data.readableBytes <= maxMessageSize else {
            metrics.refused(SyslogFrameError.Kind.tooLarge.rawValue)
            return
        }
        if datagram.remoteAddress != lastSender {
            lastSender = datagram.remoteAddress
            lastSourceIP = datagram.remoteAddress.ipAddress.map { Array($0.utf8) }
        }
        let now = currentTimeMilliseconds()
        let result = datagram.data.withUnsafeReadableBytes { pending.append($0, parser: &parser, sourceIP: lastSourceIP, now: now) }
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

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        closing = true
        if !storing {
            if pending.isEmpty { close(context: context) } else { startStore(context: context) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An ICMP error for an earlier send and the like: a UDP listener keeps listening.
        logger.debug("Error on the syslog UDP socket", metadata: ["ferry.input.error": "\(error)"])
    }

    private func close(context: ChannelHandlerContext) {
        countDrops(context: context)
        dropTimer?.cancel()
        dropTimer = nil
        context.close(promise: nil)
    }

    private func countDrops(context: ChannelHandlerContext) {
        guard let provider = context.channel as? any SocketOptionProvider else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(Self.soMeminfo))
            .whenSuccess { (info: SocketMemoryInfo) in
                let handler = bound.value.0
                let drops = info.values.8  // SK_MEMINFO_DROPS
                if drops != handler.dropsSeen {
                    handler.metrics.udpDrops?.increment(by: Int(drops &- handler.dropsSeen))
                    handler.dropsSeen = drops
                }
            }
    }

    /// `SO_MEMINFO` (Linux ≥ 4.12, `asm-generic/socket.h`).
    private static let soMeminfo: CInt = 55

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
            // UDP senders get no answer either way: the batch is lost, like datagrams the kernel drops.
            metrics.storeFailures.increment()
            logger.error("Could not store syslog messages received over UDP", metadata: [
                "ferry.input.error": "\(error)", "ferry.input.messages": "\(batch.count)",
            ])
        }
        if !pending.isEmpty {
            startStore(context: context)
        } else if closing {
            close(context: context)
        }
        if readPending, readsAllowed {
            readPending = false
            context.read()
        }
    }
}

/// `struct` view of the `u32 meminfo[SK_MEMINFO_VARS]` that `getsockopt(SO_MEMINFO)` fills (9 values since
/// Linux 4.12; the kernel copies no more than asked).
struct SocketMemoryInfo: Sendable {
    var values: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0, 0, 0, 0)
}
