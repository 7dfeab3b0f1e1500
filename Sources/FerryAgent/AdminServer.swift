import FerryForward
import FerryIngest
import FerryPipeline
import FerryQueue
import FerryWire
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// The admin endpoints: `/health` (the process answers), `/ready` (queue open and ingest listening),
/// `/metrics` (Prometheus text), `/queue` (the queue's stats as JSON, as `ferry-tools stats --json`).
///
/// Security follows the listener rule: TLS (`admin.tls`) or, on a non-loopback address, an explicit
/// `tls: false`; optional basic auth (`admin.auth`) on every endpoint.
final class AdminServer: Service, Sendable {
    let address: AgentConfiguration.Address
    let tls: TLSConfiguration?
    let auth: IngestConfiguration.BasicAuth?
    let queue: Queue
    let registry: PrometheusCollectorRegistry
    let outputs: [SupervisedOutput]
    let isReady: @Sendable () -> Bool
    let logger: Logger
    private let listening = ListeningPort()

    /// Throws when the address is not loopback and neither TLS nor `tls: false` was given, or the TLS
    /// files cannot be loaded.
    init(address: AgentConfiguration.Address, tls: IngestConfiguration.TLS? = nil, allowPlaintext: Bool = false,
         auth: IngestConfiguration.BasicAuth? = nil, queue: Queue, registry: PrometheusCollectorRegistry,
         outputs: [SupervisedOutput], isReady: @escaping @Sendable () -> Bool, logger: Logger) throws(ConfigurationError) {
        if tls == nil && !allowPlaintext && !isLoopbackHost(address.host) {
            throw ConfigurationError("admin.address \(address) is not loopback and has no TLS; configure admin.tls (certificate and key, or keystore), or set tls: false to serve metrics and the queue's state in clear text on purpose")
        }
        self.tls = try tls.map { tls throws(ConfigurationError) in try IngestServer.makeTLS(tls, path: "admin.tls") }
        self.auth = auth
        self.address = address
        self.queue = queue
        self.registry = registry
        self.outputs = outputs
        self.isReady = isReady
        self.logger = logger
    }

    func listeningPort() async -> Int {
        await listening.value
    }

    func run() async throws {
        let router = Router()
        // Before the routes: Hummingbird applies a middleware to the routes added after it.
        if let auth {
            router.add(middleware: BasicAuthMiddleware(auth: auth))
        }
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/ready") { [self] _, _ in
            isReady() ? Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
                      : Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "not ready\n")))
        }
        router.get("/queue") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: OutputStatus.queueJSON(queue, outputs: outputs) + "\n")))
        }
        router.get("/metrics") { [self] _, _ in
            updateGauges()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        let server: HTTPServerBuilder = if let tls { try .tls(.http1(), tlsConfiguration: tls) } else { .http1() }
        let app = HTTPService(
            router: router,
            server: server,
            configuration: ServerConfiguration(address: .hostname(address.host, port: address.port), serverName: "ferry-admin"),
            logger: logger,
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? address.port
                listening.set(port)
            }
        )
        do {
            try await app.run()
        } catch {
            throw IngestServer.listenError(error, listener: "admin", address: "\(address.host):\(address.port)", key: "admin.address")
        }
    }

    static let help: [String: String] = [
        "ferry_queue_records": "Records waiting in the queue.",
        "ferry_queue_events": "Events waiting in the queue.",
        "ferry_queue_bytes": "Stored bytes of the waiting records.",
        "ferry_queue_dead_records": "Records in the dead-letter table.",
        "ferry_queue_dead_events": "Events in the dead-letter table.",
        "ferry_queue_appended_events": "Events appended since the queue was made.",
        "ferry_queue_delivered_events": "Events delivered since the queue was made.",
        "ferry_queue_dropped_events": "Events dropped by when_full: drop_oldest since the queue was made.",
        "ferry_queue_fill_ratio": "Stored bytes over queue.max_bytes.",
        "ferry_queue_map_used_bytes": "Bytes of LMDB's map in use.",
        "ferry_queue_oldest_age_seconds": "Age of the oldest waiting record.",
        "ferry_output_up": "1 while the output runs, 0 after it failed (it restarts after a backoff).",
        "ferry_output_restarts": "Times the output failed and was restarted since Ferry started.",
        "ferry_output_pending_events": "Events the output has not delivered yet.",
        "ferry_output_lag_bytes": "Stored bytes of the records the output has not delivered yet.",
        "ferry_output_lag_seconds": "Age of the oldest record the output has not delivered yet.",
        "ferry_output_delivered_events": "Events the output delivered since the queue was made.",
        "ferry_output_dead_records": "Records in the output's dead set.",
        "ferry_output_dropped_events": "Events the output never got: reason lagging (when_lagging: drop) or full (when_full: drop_oldest).",
        "ferry_output_host_healthy": "1 when the downstream host takes requests.",
        "ferry_output_host_open": "1 when the host's circuit is open.",
        "ferry_output_host_in_flight": "Requests in flight to the host.",
        "ferry_output_host_requests_sent": "Requests sent to the host.",
        "ferry_output_host_requests_failed": "Requests to the host that failed and were retried.",
        "ferry_output_host_latency_seconds": "Moving average of the host's answer time.",
    ]

    /// Queue depth and per-host state are read when scraped, not pushed: always current, no timer.
    private func updateGauges() {
        let stats = queue.stats
        func gauge(_ name: String, _ value: Double, _ labels: [(String, String)] = []) {
            let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: Self.help[name] ?? name)
            registry.makeGauge(descriptor: descriptor, labels: labels).set(value)
        }
        gauge("ferry_queue_records", Double(stats.records))
        gauge("ferry_queue_events", Double(stats.events))
        gauge("ferry_queue_bytes", Double(stats.bytes))
        gauge("ferry_queue_dead_records", Double(stats.deadRecords))
        gauge("ferry_queue_dead_events", Double(stats.deadEvents))
        gauge("ferry_queue_appended_events", Double(stats.appendedEvents))
        gauge("ferry_queue_delivered_events", Double(stats.deliveredEvents))
        gauge("ferry_queue_dropped_events", Double(stats.droppedEvents))
        gauge("ferry_queue_fill_ratio", stats.fillRatio)
        gauge("ferry_queue_map_used_bytes", Double(stats.mapUsedBytes))
        let now = RecordTime.now()
        let age = stats.oldestCreatedAt.map { Double(max(0, now - $0)) / 1000 } ?? 0
        gauge("ferry_queue_oldest_age_seconds", age)
        for output in stats.outputs {
            let labels = [("output", output.name)]
            let status = outputs.first { $0.name == output.name }?.status
            gauge("ferry_output_up", status?.state == .failed ? 0 : 1, labels)
            gauge("ferry_output_restarts", Double(status?.restarts ?? 0), labels)
            gauge("ferry_output_pending_events", Double(output.pendingEvents), labels)
            gauge("ferry_output_lag_bytes", Double(output.pendingBytes), labels)
            gauge("ferry_output_lag_seconds", output.oldestPendingCreatedAt.map { Double(max(0, now - $0)) / 1000 } ?? 0, labels)
            gauge("ferry_output_delivered_events", Double(output.deliveredEvents), labels)
            gauge("ferry_output_dead_records", Double(output.deadRecords), labels)
            gauge("ferry_output_dropped_events", Double(output.droppedLaggingEvents), labels + [("reason", "lagging")])
            gauge("ferry_output_dropped_events", Double(output.droppedFullEvents), labels + [("reason", "full")])
        }
        for output in outputs {
            guard let forwarder = output.current as? HTTPForwarder else { continue }
            for host in forwarder.hostStatus() {
                hostGauges(host, labels: [("output", output.name), ("host", host.endpoint)], gauge)
            }
        }
    }

    private func hostGauges(_ host: HostStatus, labels: [(String, String)], _ gauge: (String, Double, [(String, String)]) -> Void) {
        gauge("ferry_output_host_healthy", host.state == "healthy" ? 1 : 0, labels)
        gauge("ferry_output_host_open", host.state == "open" ? 1 : 0, labels)
        gauge("ferry_output_host_in_flight", Double(host.inFlight), labels)
        gauge("ferry_output_host_requests_sent", Double(host.sent), labels)
        gauge("ferry_output_host_requests_failed", Double(host.failed), labels)
        gauge("ferry_output_host_hedges_sent", Double(host.hedges), labels)
        gauge("ferry_output_host_latency_seconds", host.latencySeconds ?? 0, labels)
    }
}

/// Refuses a request without the configured basic-auth credentials: 401 with `WWW-Authenticate`.
struct BasicAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let auth: IngestConfiguration.BasicAuth

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard basicAuthAccepts(request.headers[.authorization], auth) else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: #"Basic realm="ferry-admin""#],
                             body: .init(byteBuffer: ByteBuffer(string: "missing or wrong credentials; send HTTP basic auth with admin.auth's user and password\n")))
        }
        return try await next(request, context)
    }
}
