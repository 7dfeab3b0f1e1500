package import NIOSSL
import Synchronization

/// Where a server listens: a host name or address and a port (0 picks a free one).
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Limits shared by the syslog and RELP listeners.
package struct SyslogLimits: Sendable, Hashable {
    /// The largest message (RELP: DATALEN) taken; a larger frame closes its connection (TCP) or is refused
    /// (UDP). Default 64 KiB.
    package var maxMessageSize = 64 * 1024
    /// Connections open at most; more wait in the listen backlog until one closes. Default 1024.
    package var maxConnections = 1024
    /// A connection that sends nothing for this long is closed (RELP with the `serverclose` hint); nil never.
    /// Not while a store call of the connection runs. Default 1 hour: plain TCP senders (rsyslog `omfwd`)
    /// notice a closed connection only when they write to it, so short timeouts cost them messages.
    package var idleTimeout: Duration? = .seconds(3600)
    /// Bytes of messages gathered for the next store call while one runs; reading stops beyond it.
    /// Default 1 MiB (about one queue record).
    package var maxBatchBytes = 1 << 20

    package init() {}
}

/// A listener's limits as they are now: set at the start, changed by SIGHUP (`SyslogServer.apply`,
/// `RELPServer.apply`). Each new connection reads them when it is set up, the connection limit on every
/// accept; connections already open keep the limits they started with.
final class LiveLimits: Sendable {
    private let state: Mutex<SyslogLimits>

    init(_ limits: SyslogLimits) {
        state = Mutex(limits)
    }

    var current: SyslogLimits { state.withLock { $0 } }

    func set(_ limits: SyslogLimits) {
        state.withLock { $0 = limits }
    }
}

/// The configuration of `SyslogServer` (`input.syslog`): TCP (optionally TLS, RFC 5425) and UDP listeners.
package struct SyslogServerConfiguration: Sendable {
    /// The input's name: the `input` label of its metrics and `ferry.input.name` in its logs.
    package var name: String
    /// TCP listener (octet counting or newline framing, detected per frame), nil for none.
    package var tcp: ListenAddress?
    /// UDP listener (one datagram, one message), nil for none.
    package var udp: ListenAddress?
    /// TLS for the TCP listener (RFC 5425); nil for plain TCP. The agent builds it from the `tls` block.
    package var tls: TLSConfiguration?
    package var limits = SyslogLimits()
    /// `SO_RCVBUF` asked for the UDP socket; the kernel caps it at `net.core.rmem_max`. Default 4 MiB:
    /// UDP has no backpressure, and a burst beyond this buffer is dropped (and counted).
    package var udpReceiveBufferBytes = 4 << 20

    package init(name: String, tcp: ListenAddress? = nil, udp: ListenAddress? = nil, tls: TLSConfiguration? = nil) {
        self.name = name
        self.tcp = tcp
        self.udp = udp
        self.tls = tls
    }
}

/// The configuration of `RELPServer` (`input.relp`).
package struct RELPServerConfiguration: Sendable {
    /// The input's name: the `input` label of its metrics and `ferry.input.name` in its logs.
    package var name: String
    package var address: ListenAddress
    /// TLS (librelp's `tls="on"` clients); nil for plain TCP.
    package var tls: TLSConfiguration?
    package var limits = SyslogLimits()

    package init(name: String, address: ListenAddress, tls: TLSConfiguration? = nil) {
        self.name = name
        self.address = address
        self.tls = tls
    }
}
