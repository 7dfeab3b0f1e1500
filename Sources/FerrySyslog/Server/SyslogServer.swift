package import CoreMetrics
package import Logging
package import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The `input.syslog` listeners: TCP (octet counting or newline framing, per frame; TLS optional, RFC 5425)
/// and UDP (one datagram, one message), parsing RFC 5424 and RFC 3164 into events for `store`.
///
/// Lifecycle: `bind` opens the sockets (so address errors show at start); `run` (a swift-service-lifecycle
/// `Service`) serves until graceful shutdown or cancellation, then stops accepting, lets every connection
/// store what it has received, closes them, and returns.
///
/// Loss window: plain syslog has no acknowledgement. What a sender wrote but Ferry has not stored when Ferry
/// dies is lost: the socket buffers and at most two batches per connection (the one being stored and the
/// next). RELP (`RELPServer`) has no such window.
package final class SyslogServer: Service, Sendable {
    /// Where the TCP and UDP listeners are bound (the port is the real one when 0 was asked).
    package let tcpAddress: SocketAddress?
    package let udpAddress: SocketAddress?
    /// `tls` when the TCP listener speaks TLS (RFC 5425), else `tcp`.
    let tcpScheme: String
    private let tcpChannel: (any Channel)?
    private let udpChannel: (any Channel)?
    private let quiescing: ServerQuiescingHelper
    private let group: any EventLoopGroup
    private let logger: Logger
    private let stopped = Mutex(false)
    private let limits: LiveLimits

    private init(tcp: (any Channel)?, udp: (any Channel)?, tls: Bool, limits: LiveLimits, quiescing: ServerQuiescingHelper,
                 group: any EventLoopGroup, logger: Logger) {
        self.limits = limits
        tcpScheme = tls ? "tls" : "tcp"
        tcpChannel = tcp
        udpChannel = udp
        tcpAddress = tcp?.localAddress
        udpAddress = udp?.localAddress
        self.quiescing = quiescing
        self.group = group
        self.logger = logger
    }

    /// Binds the configured listeners.
    /// - Parameters:
    ///   - utcOffset: the collector's zone, for RFC 3164 times (the C library's local zone by default).
    ///   - metricsFactory: where the `ferry_input_syslog_*` metrics go (the global one by default).
    package static func bind(
        configuration: SyslogServerConfiguration, store: @escaping SyslogStore, logger: Logger,
        utcOffset: @escaping SyslogParser.UTCOffset = SyslogParser.localUTCOffset,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> SyslogServer {
        var logger = logger
        logger[metadataKey: "ferry.input.name"] = "\(configuration.name)"
        let tls = try Listener.tlsContext(configuration.tls, input: configuration.name)
        let limits = configuration.limits
        let live = LiveLimits(limits)
        let quiescing = ServerQuiescingHelper(group: group)
        let refusals = SyslogFrameError.Kind.allCases.map(\.rawValue)
        var tcp: (any Channel)?
        if let address = configuration.tcp {
            let metrics = InputMetrics(prefix: "ferry_input_syslog", dimensions: [("input", configuration.name), ("transport", tls == nil ? "tcp" : "tls")],
                                       refusalReasons: refusals, factory: metricsFactory)
            let connectionLogger = logger
            do {
                tcp = try await Listener.bindTCP(address, group: group, tls: tls, limits: live, metrics: metrics, quiescing: quiescing) { limits in
                    [SyslogConnectionHandler(store: store, metrics: metrics, maxBatchBytes: limits.maxBatchBytes,
                                             maxMessageSize: limits.maxMessageSize, parser: SyslogParser(utcOffset: utcOffset),
                                             logger: connectionLogger)]
                }
            } catch {
                throw SyslogServerError("cannot listen for syslog over TCP on \(address) (\(error)); check the address and that the port is free")
            }
        }
        var udp: (any Channel)?
        if let address = configuration.udp {
            let metrics = InputMetrics(prefix: "ferry_input_syslog", dimensions: [("input", configuration.name), ("transport", "udp")],
                                       refusalReasons: [SyslogFrameError.Kind.tooLarge.rawValue], datagrams: true, factory: metricsFactory)
            let datagramLogger = logger
            do {
                udp = try await DatagramBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(configuration.udpReceiveBufferBytes))
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: limits.maxMessageSize + 1))
                    .channelOption(.maxMessagesPerRead, value: 64)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(SyslogDatagramHandler(
                                store: store, metrics: metrics, limits: limits, parser: SyslogParser(utcOffset: utcOffset), logger: datagramLogger))
                        }
                    }
                    .bind(host: address.host, port: address.port)
                    .get()
            } catch {
                try? await tcp?.close()
                throw SyslogServerError("cannot listen for syslog over UDP on \(address) (\(error)); check the address and that the port is free")
            }
        }
        let server = SyslogServer(tcp: tcp, udp: udp, tls: tls != nil, limits: live, quiescing: quiescing, group: group, logger: logger)
        logger.info("Listening for syslog", metadata: [
            "ferry.input.tcp": "\(server.tcpAddress.map { "\($0)" } ?? "-")", "ferry.input.udp": "\(server.udpAddress.map { "\($0)" } ?? "-")",
            "ferry.input.tls": "\(tls != nil)",
        ])
        return server
    }

    /// Applies new limits to the running listeners (SIGHUP): new TCP connections get them, and the connection
    /// limit holds from the next accept. Returns the limits now in effect and the keys that cannot change
    /// without a restart, which keep their running values: `max_message_size` while a UDP listener runs (its
    /// receive buffers were sized by it at the start).
    package func apply(_ fresh: SyslogLimits, path: String) -> (inEffect: SyslogLimits, restartKeys: [String]) {
        var inEffect = fresh
        var keys: [String] = []
        let running = limits.current
        if udpChannel != nil && fresh.maxMessageSize != running.maxMessageSize {
            inEffect.maxMessageSize = running.maxMessageSize
            keys.append("\(path).max_message_size")
        }
        limits.set(inEffect)
        return (inEffect, keys)
    }

    /// Serves until graceful shutdown (or cancellation), then shuts down as `shutdown` does.
    package func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops accepting, stores what every connection has received, closes them; returns when all are closed.
    package func shutdown() async {
        let alreadyStopped = stopped.withLock { state in
            defer { state = true }
            return state
        }
        guard !alreadyStopped else { return }
        if tcpChannel != nil {
            let promise = group.any().makePromise(of: Void.self)
            quiescing.initiateShutdown(promise: promise)
            try? await promise.futureResult.get()
        }
        if let udpChannel {
            udpChannel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            try? await udpChannel.closeFuture.get()
        }
        logger.info("Stopped listening for syslog")
    }
}
