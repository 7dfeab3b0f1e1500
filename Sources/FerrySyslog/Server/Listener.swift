import Logging
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL

/// The TCP side shared by the syslog and RELP servers: a listening socket with the connection limit and a
/// quiescing helper, and per connection TLS (optional), the idle timeout, then the protocol's handlers.
enum Listener {
    /// Binds `address`; `handlers` makes a connection's protocol handlers with the limits in effect when it
    /// is accepted (called on its event loop).
    static func bindTCP(
        _ address: ListenAddress, group: any EventLoopGroup, tls: NIOSSLContext?, limits: LiveLimits, metrics: InputMetrics,
        quiescing: ServerQuiescingHelper, handlers: @escaping @Sendable (SyslogLimits) -> [any ChannelHandler]
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                    try channel.pipeline.syncOperations.addHandler(ConnectionLimiter(limits: limits, metrics: metrics))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let limits = limits.current
                    let pipeline = channel.pipeline.syncOperations
                    if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls)) }
                    if let idle = limits.idleTimeout {
                        try pipeline.addHandler(IdleStateHandler(readTimeout: .nanoseconds(Int64(clamping: idle.components.seconds) &* 1_000_000_000 + idle.components.attoseconds / 1_000_000_000)))
                    }
                    try pipeline.addHandlers(handlers(limits))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    /// The TLS context of a listener, with an error that says what to fix.
    static func tlsContext(_ configuration: TLSConfiguration?, input: String) throws -> NIOSSLContext? {
        guard let configuration else { return nil }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SyslogServerError("cannot set up TLS for input \(input) (\(error)); check the certificate and key")
        }
    }
}

/// A server could not start: the message says what happened and what to do.
package struct SyslogServerError: Error, Hashable, Sendable, CustomStringConvertible {
    package let message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { message }
}
