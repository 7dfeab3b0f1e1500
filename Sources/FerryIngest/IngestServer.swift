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
    private let settings: IngestLiveSettings

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
        self.settings = IngestLiveSettings(auth: configuration.auth, limits: configuration.limits)
        self.intake = intake
        self.logger = logger
        self.tlsConfiguration = try configuration.tls.map { tls throws(ConfigurationError) in try Self.makeTLS(tls) }
    }

    /// What SIGHUP changes on the running server: `auth` and the limits, from the next request on (the
    /// request timeout and the body limit of `RequestGuard` from the next connection on). Returns the
    /// configuration now in effect and the keys of `fresh` that differ from the start's and cannot change
    /// without a restart (the address, TLS, `idle_timeout`, `max_connections`: Hummingbird's server took
    /// them at its start); those keep their running values, the rest is applied.
    package func apply(_ fresh: IngestConfiguration) -> (inEffect: IngestConfiguration, restartKeys: [String]) {
        let path = "input.http"
        var keys: [String] = []
        if fresh.host != configuration.host || fresh.port != configuration.port { keys.append("\(path).address") }
        if fresh.tls != configuration.tls || fresh.allowPlaintext != configuration.allowPlaintext { keys.append("\(path).tls") }
        if fresh.limits.idleTimeoutSeconds != configuration.limits.idleTimeoutSeconds { keys.append("\(path).limits.idle_timeout") }
        if fresh.limits.maxConnections != configuration.limits.maxConnections { keys.append("\(path).limits.max_connections") }
        var inEffect = configuration
        inEffect.auth = fresh.auth
        inEffect.limits = fresh.limits
        (inEffect.limits.idleTimeoutSeconds, inEffect.limits.maxConnections) = (configuration.limits.idleTimeoutSeconds, configuration.limits.maxConnections)
        settings.set(auth: inEffect.auth, limits: inEffect.limits)
        return (inEffect, keys)
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

    /// The `Server` header of the ingest's answers.
    static let serverName = "ferry"

    package func run() async throws {
        let handler = IngestHandler(settings: settings, intake: intake, logger: logger, metrics: IngestMetrics(),
                                    isAccepting: { [self] in accepting.load(ordering: .acquiring) })
        let router = Router(context: IngestContext.self)
        router.post("/") { request, context in try await handler.handle(request, context: context) }
        let limits = configuration.limits
        let settings = self.settings
        let http1 = HTTP1Channel.Configuration(
            // Made for each connection, with the limits in effect then.
            additionalChannelHandlers: {
                let limits = settings.current.limits
                return [RequestGuard(deadline: .seconds(limits.requestTimeoutSeconds), maxBodyBytes: limits.maxBodyBytes)]
            }(),
            idleTimeout: nil  // `ConnectionIdleTimeout`'s, which hears of the requests `RawIngestFront` takes
        )
        // A whole plain `POST /` in one read is answered on its raw bytes (`RawIngestFront`), another
        // `POST /` with a small body on the event loop (`FastIngest`), the rest by the router.
        let coalescers = IngestCoalescers(handler: handler)
        let http1WithFastPath = HTTPServerBuilder { responder in
            IngestChannel(http1: HTTP1Channel(responder: responder, configuration: http1), idleTimeout: .seconds(limits.idleTimeoutSeconds),
                          makeFastPath: { loop in FastIngest(handler: handler, serverName: Self.serverName, coalescer: coalescers.coalescer(for: loop)) },
                          makeFront: { loop, idle in
                              RawIngestFront(handler: handler, serverName: Self.serverName, coalescer: coalescers.coalescer(for: loop), idle: idle)
                          })
        }
        let server: HTTPServerBuilder
        if let tlsConfiguration {
            server = try .tls(http1WithFastPath, tlsConfiguration: tlsConfiguration)
        } else {
            server = http1WithFastPath
        }
        let app = HTTPService(
            router: router,
            server: server,
            configuration: ServerConfiguration(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: Self.serverName,
                availableConnectionsDelegate: MaximumAvailableConnections(limits.maxConnections)
            ),
            logger: logger,
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? configuration.port
                listening.set(port)
                logger.info("ingest listening", metadata: [
                    "ferry.ingest.address": "\(configuration.host):\(port)",
                    "ferry.ingest.tls": "\(tlsConfiguration != nil)",
                ])
            }
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
        let loaded: ListenerIdentities.Loaded
        do {
            loaded = try ListenerIdentities.load(tls.identity)
        } catch {
            throw ConfigurationError("cannot load the TLS identity of \(path) (\(error)); check the certificate, key or keystore paths and the keystore password")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: loaded.chain.map { .certificate($0) }, privateKey: .privateKey(loaded.key))
        // Each handshake takes the identity last read (a reload reads the files again).
        configuration.sslContextCallback = ListenerIdentities.shared.register(path, identity: tls.identity, loaded: loaded)
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

/// The certificate chains and keys of Ferry's TLS listeners (ingest, syslog, RELP, admin), read again by
/// `reloadAll()` (SIGHUP): a certificate rotated in place (the same files, new content) is served to new
/// connections without a restart; connections already open keep the one they began with. Every
/// listener's TLS is made by `IngestServer.makeTLS`, which registers its identity here, by its
/// configuration path, and points NIOSSL's per-handshake callback at it.
package final class ListenerIdentities: Sendable {
    package static let shared = ListenerIdentities()

    package struct Loaded: Sendable {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
    }

    /// One listener's identity: its files and what was last read from them. The handshake callback holds
    /// it; the registry only refers to it weakly, so a listener that is gone (a test's server, say) drops
    /// out of the reloads.
    private final class Holder: Sendable {
        let path: String
        let identity: IngestConfiguration.TLS.Identity
        let loaded: Mutex<Loaded>
        init(path: String, identity: IngestConfiguration.TLS.Identity, loaded: Loaded) {
            self.path = path
            self.identity = identity
            self.loaded = Mutex(loaded)
        }
    }

    private struct Entry: @unchecked Sendable {  // a weak reference to a Sendable class
        weak var holder: Holder?
    }

    private let entries = Mutex<[Entry]>([])

    /// Reads an identity's files (PEM certificate chain and key, or a PKCS#12 keystore).
    static func load(_ identity: IngestConfiguration.TLS.Identity) throws -> Loaded {
        switch identity {
        case .pem(let certificate, let key):
            return Loaded(chain: try NIOSSLCertificate.fromPEMFile(certificate), key: try NIOSSLPrivateKey(file: key, format: .pem))
        case .pkcs12(let path, let password):
            let bundle = try NIOSSLPKCS12Bundle(file: path, passphrase: Array(password.utf8))
            return Loaded(chain: bundle.certificateChain, key: bundle.privateKey)
        }
    }

    /// Keeps `loaded` as the identity of a listener (`path`: its configuration key, for logs); returns the
    /// handshake callback that serves it, and what was read last after each reload.
    func register(_ path: String, identity: IngestConfiguration.TLS.Identity, loaded: Loaded) -> NIOSSLContextCallback {
        let holder = Holder(path: path, identity: identity, loaded: loaded)
        entries.withLock { entries in
            entries.removeAll { $0.holder == nil }
            entries.append(Entry(holder: holder))
        }
        return { _, promise in
            let current = holder.loaded.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = current.chain.map { .certificate($0) }
            override.privateKey = .privateKey(current.key)
            promise.succeed(override)
        }
    }

    /// Reads every registered identity again. Those that load are served from the next handshake on; one
    /// that does not (a file missing or half copied, a wrong keystore password) keeps the identity it had.
    /// Not checked: that a new certificate and key belong together (NIOSSL offers no check); a mismatch
    /// fails the handshakes until the next reload. Returns the listeners read again, and those that
    /// failed with why.
    package func reloadAll() -> (reloaded: [String], failed: [(path: String, error: String)]) {
        let holders = entries.withLock { entries in
            entries.removeAll { $0.holder == nil }
            return entries.compactMap(\.holder)
        }
        var reloaded: [String] = []
        var failed: [(path: String, error: String)] = []
        for holder in holders {
            do {
                let loaded = try Self.load(holder.identity)
                holder.loaded.withLock { $0 = loaded }
                reloaded.append(holder.path)
            } catch {
                failed.append((holder.path, "\(error)"))
            }
        }
        return (reloaded, failed)
    }
}

/// The ingest's `auth` and limits as they are now: set at the start, changed by SIGHUP (`IngestServer.apply`).
final class IngestLiveSettings: Sendable {
    struct Current: Sendable {
        /// `user:password` of `auth`, nil without auth.
        let credentials: [UInt8]?
        let limits: IngestConfiguration.Limits
    }

    private let state: Mutex<Current>

    init(auth: IngestConfiguration.BasicAuth?, limits: IngestConfiguration.Limits) {
        state = Mutex(Self.current(auth: auth, limits: limits))
    }

    var current: Current { state.withLock { $0 } }

    func set(auth: IngestConfiguration.BasicAuth?, limits: IngestConfiguration.Limits) {
        let new = Self.current(auth: auth, limits: limits)
        state.withLock { $0 = new }
    }

    private static func current(auth: IngestConfiguration.BasicAuth?, limits: IngestConfiguration.Limits) -> Current {
        Current(credentials: auth.map { Array("\($0.username):\($0.password)".utf8) }, limits: limits)
    }
}
