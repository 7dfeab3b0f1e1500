package import FerryPipeline
package import FerryQueue
package import FerryWire
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
package import Logging
import NIOCore
package import NIOSSL
package import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP ingest: `POST /` with NDJSON, JSON or text, plain or gzip, answered 200 only after the events
/// are committed and fsynced in the queue. A swift-service-lifecycle `Service`.
package final class IngestServer: Input, Sendable {
    package let configuration: IngestConfiguration
    private let intake: Intake
    private let logger: Logger
    private let accepting = Atomic<Bool>(true)
    private let listening = ListeningPort()
    private let tlsConfiguration: TLSConfiguration?

    /// Checks the configuration (TLS files are loaded here, so a bad path fails at start, not at the
    /// first connection). Refuses a non-loopback address without TLS unless `allowPlaintext` is set.
    package convenience init(configuration: IngestConfiguration, queue: Queue, stamp: EventStamp = .none,
                             logger: Logger = Logger(label: "ferry.ingest")) throws(ConfigurationError) {
        try self.init(configuration: configuration, intake: Intake(input: "http", queue: queue, stamp: stamp, logger: logger), logger: logger)
    }

    package init(configuration: IngestConfiguration, intake: Intake, logger: Logger = Logger(label: "ferry.ingest")) throws(ConfigurationError) {
        if configuration.tls == nil && !configuration.isLoopback {
            guard configuration.allowPlaintext else {
                throw ConfigurationError("input.http.address \(configuration.host):\(configuration.port) is not loopback and has no TLS; configure input.http.tls (certificate and key, or keystore), or set tls: false to send events in clear text on purpose")
            }
            logger.warning("ingest listens without TLS on a non-loopback address: events and passwords cross the network in clear text",
                           metadata: ["ferry.ingest.address": "\(configuration.host):\(configuration.port)"])
        }
        self.configuration = configuration
        self.intake = intake
        self.logger = logger
        self.tlsConfiguration = try configuration.tls.map { tls throws(ConfigurationError) in try Self.makeTLS(tls) }
    }

    /// Stops taking events: later requests are answered 503 with Retry-After (graceful shutdown begins).
    package func stopAccepting() {
        accepting.store(false, ordering: .releasing)
    }

    /// Once the server listens: where to send events.
    package func started() async -> String {
        let port = await listeningPort()
        let scheme = configuration.tls == nil ? "http" : "https"
        let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
        return "Send events:  POST \(scheme)://\(host):\(port)/  (NDJSON, JSON or text; gzip welcome)"
    }

    /// The port the server listens on, once it does (useful with port 0).
    package func listeningPort() async -> Int {
        await listening.value
    }

    package func run() async throws {
        let handler = IngestHandler(configuration: configuration, intake: intake, logger: logger, metrics: IngestMetrics(),
                                    isAccepting: { [self] in accepting.load(ordering: .acquiring) })
        let router = Router(context: IngestContext.self)
        router.post("/") { request, context in try await handler.handle(request, context: context) }
        let limits = configuration.limits
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestGuard(deadline: .seconds(limits.requestTimeoutSeconds), maxBodyBytes: limits.maxBodyBytes)],
            idleTimeout: .seconds(limits.idleTimeoutSeconds)
        )
        let server: HTTPServerBuilder
        if let tlsConfiguration {
            server = try .tls(.http1(configuration: http1), tlsConfiguration: tlsConfiguration)
        } else {
            server = .http1(configuration: http1)
        }
        let app = Application(
            router: router,
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "ferry",
                availableConnectionsDelegate: MaximumAvailableConnections(limits.maxConnections)
            ),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? configuration.port
                listening.set(port)
                logger.info("ingest listening", metadata: [
                    "ferry.ingest.address": "\(configuration.host):\(port)",
                    "ferry.ingest.tls": "\(tlsConfiguration != nil)",
                ])
            },
            logger: logger
        )
        // On graceful shutdown, requests still arriving on open connections are answered 503 + Retry-After
        // while Hummingbird finishes the ones in flight and closes the listener.
        try await withGracefulShutdownHandler {
            do {
                try await app.run()
            } catch {
                throw Self.listenError(error, listener: "ingest", address: "\(configuration.host):\(configuration.port)", key: "input.http.address")
            }
        } onGracefulShutdown: { [self] in
            stopAccepting()
        }
    }

    /// A server's failure to bind, as a sentence that names the listener, its address and what to do
    /// ("ingest cannot listen on 127.0.0.1:9800: Address already in use; …") instead of NIO's
    /// `bind(descriptor:ptr:bytes:)` text. Other errors are returned as they are.
    package static func listenError(_ error: any Error, listener: String, address: String, key: String) -> any Error {
        guard let io = error as? IOError, [EADDRINUSE, EADDRNOTAVAIL, EACCES].contains(io.errnoCode) else { return error }
        let remedy = switch io.errnoCode {
        case EADDRINUSE: "stop what uses that port, or choose another \(key)"
        case EACCES: "ports below 1024 need CAP_NET_BIND_SERVICE (see the unit's drop-in), or choose another \(key)"
        default: "the address is not one of this host's; choose another \(key)"
        }
        return ConfigurationError("\(listener) cannot listen on \(address): \(String(cString: strerror(io.errnoCode))); \(remedy)", code: .unusable)
    }

    /// The server TLS configuration of a listener's `tls` block (`path`: its key, for errors); the syslog
    /// and RELP inputs take the same block.
    package static func makeTLS(_ tls: IngestConfiguration.TLS, path: String = "input.http.tls") throws(ConfigurationError) -> TLSConfiguration {
        var configuration: TLSConfiguration
        do {
            switch tls.identity {
            case .pem(let certificate, let key):
                configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
                )
            case .pkcs12(let path, let password):
                let bundle = try NIOSSLPKCS12Bundle(file: path, passphrase: Array(password.utf8))
                configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: bundle.certificateChain.map { .certificate($0) },
                    privateKey: .privateKey(bundle.privateKey)
                )
            }
        } catch {
            throw ConfigurationError("cannot load the TLS identity of \(path) (\(error)); check the certificate, key or keystore paths and the keystore password")
        }
        switch tls.clientAuth {
        case .none:
            configuration.certificateVerification = .none
        case .optional, .required:
            guard !tls.certificateAuthorities.isEmpty else {
                throw ConfigurationError("\(path).client_auth is \(tls.clientAuth.rawValue) but certificate_authorities is empty; list the PEM files of the CAs that sign client certificates")
            }
            do {
                configuration.trustRoots = .certificates(try tls.certificateAuthorities.flatMap { try NIOSSLCertificate.fromPEMFile($0) })
            } catch {
                throw ConfigurationError("cannot load \(path).certificate_authorities (\(error)); check the paths")
            }
            // `.noHostnameVerification` requires a client certificate on a server; `.optionalVerification`
            // verifies one if presented and accepts a client without.
            configuration.certificateVerification = tls.clientAuth == .required ? .noHostnameVerification : .optionalVerification
        }
        return configuration
    }
}


/// Per-request context: Hummingbird's core storage plus the peer's address for logs.
struct IngestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
