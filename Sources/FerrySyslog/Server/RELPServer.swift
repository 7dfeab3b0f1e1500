package import CoreMetrics
package import Logging
package import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The `input.relp` listener: RELP (rsyslog's `omrelp`, librelp clients) over TCP or TLS. Each `syslog`
/// message is answered `rsp 200 OK` only after the store call that held it returned, i.e. after the queue's
/// commit; see `RELPSession` for the protocol rules.
///
/// Lifecycle as `SyslogServer`: `bind`, then `run` until graceful shutdown; at shutdown every session stores
/// and answers what it has taken, sends the `serverclose` hint and closes.
package final class RELPServer: Service, Sendable {
    /// Where the listener is bound (the port is the real one when 0 was asked).
    package let address: SocketAddress?
    /// The listener speaks TLS.
    let usesTLS: Bool
    private let channel: any Channel
    private let quiescing: ServerQuiescingHelper
    private let group: any EventLoopGroup
    private let logger: Logger
    private let stopped = Mutex(false)
    private let limits: LiveLimits

    private init(channel: any Channel, tls: Bool, limits: LiveLimits, quiescing: ServerQuiescingHelper, group: any EventLoopGroup, logger: Logger) {
        self.limits = limits
        self.channel = channel
        usesTLS = tls
        address = channel.localAddress
        self.quiescing = quiescing
        self.group = group
        self.logger = logger
    }

    /// Binds the listener.
    /// - Parameters:
    ///   - utcOffset: the collector's zone, for RFC 3164 times (the C library's local zone by default).
    ///   - metricsFactory: where the `ferry_input_relp_*` metrics go (the global one by default).
    package static func bind(
        configuration: RELPServerConfiguration, store: @escaping SyslogStore, logger: Logger,
        utcOffset: @escaping SyslogParser.UTCOffset = SyslogParser.localUTCOffset,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RELPServer {
        var logger = logger
        logger[metadataKey: "ferry.input.name"] = "\(configuration.name)"
        let tls = try Listener.tlsContext(configuration.tls, input: configuration.name)
        let live = LiveLimits(configuration.limits)
        let quiescing = ServerQuiescingHelper(group: group)
        let metrics = InputMetrics(prefix: "ferry_input_relp", dimensions: [("input", configuration.name)],
                                   refusalReasons: RELPProtocolError.Kind.allCases.map(\.rawValue), factory: metricsFactory)
        let connectionLogger = logger
        let channel: any Channel
        do {
            channel = try await Listener.bindTCP(configuration.address, group: group, tls: tls, limits: live, metrics: metrics, quiescing: quiescing) { limits in
                var session = RELPSession.Configuration()
                session.maxBatchBytes = limits.maxBatchBytes
                return [ByteToMessageHandler(RELPFrameDecoder(maxDataSize: limits.maxMessageSize)),
                        RELPConnectionHandler(session: RELPSession(configuration: session), store: store, metrics: metrics,
                                              parser: SyslogParser(utcOffset: utcOffset), logger: connectionLogger)]
            }
        } catch {
            throw SyslogServerError("cannot listen for RELP on \(configuration.address) (\(error)); check the address and that the port is free")
        }
        let server = RELPServer(channel: channel, tls: tls != nil, limits: live, quiescing: quiescing, group: group, logger: logger)
        logger.info("Listening for RELP", metadata: ["ferry.input.address": "\(server.address.map { "\($0)" } ?? "-")", "ferry.input.tls": "\(tls != nil)"])
        return server
    }

    /// Applies new limits to the running listener (SIGHUP): new sessions get them, and the connection limit
    /// holds from the next accept; sessions already open keep theirs. All of them can change (the same
    /// answer as `SyslogServer.apply`, whose UDP listener cannot take a new message size).
    package func apply(_ fresh: SyslogLimits, path: String) -> (inEffect: SyslogLimits, restartKeys: [String]) {
        limits.set(fresh)
        return (fresh, [])
    }

    /// Serves until graceful shutdown (or cancellation), then shuts down as `shutdown` does.
    package func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops accepting; every session stores and answers what it has taken, hints `serverclose` and closes;
    /// returns when all are closed.
    package func shutdown() async {
        let alreadyStopped = stopped.withLock { state in
            defer { state = true }
            return state
        }
        guard !alreadyStopped else { return }
        let promise = group.any().makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: promise)
        try? await promise.futureResult.get()
        logger.info("Stopped listening for RELP")
    }
}
