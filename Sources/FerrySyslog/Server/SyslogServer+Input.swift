package import FerryPipeline
package import Logging
import NIOCore

extension SyslogServer: Input {
    /// Binds the configured listeners, storing through `intake` (see `Intake.syslogStore()`).
    package static func bind(configuration: SyslogServerConfiguration, intake: Intake, logger: Logger) async throws -> SyslogServer {
        try await bind(configuration: configuration, store: intake.syslogStore(), logger: logger)
    }

    package func started() async -> String {
        var transports: [String] = []
        if let tcpAddress { transports.append("\(tcpScheme)://\(Self.text(tcpAddress))") }
        if let udpAddress { transports.append("udp://\(Self.text(udpAddress))") }
        return "Send syslog:  \(transports.joined(separator: " and ")) (RFC 5424 or 3164; octet counting or newlines)"
    }

    static func text(_ address: SocketAddress) -> String {
        let host = address.ipAddress ?? "?"
        return (host.contains(":") ? "[\(host)]" : host) + ":\(address.port ?? 0)"
    }
}

extension RELPServer: Input {
    /// Binds the listener, storing through `intake` (see `Intake.syslogStore()`).
    package static func bind(configuration: RELPServerConfiguration, intake: Intake, logger: Logger) async throws -> RELPServer {
        try await bind(configuration: configuration, store: intake.syslogStore(), logger: logger)
    }

    package func started() async -> String {
        "Send RELP:    \(usesTLS ? "tls" : "tcp")://\(address.map(SyslogServer.text) ?? "?") (rsyslog omrelp; answered after the commit)"
    }
}
