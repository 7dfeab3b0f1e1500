package import FerryPipeline

/// Settings of the `http` output and its balancer. Defaults follow the Logstash `logstash` output.
package struct HTTPOutputConfiguration: Sendable, Hashable {
    /// Downstream hosts, `host:port` (IPv6 in brackets, port 9800 when omitted).
    package var hosts: [String]
    /// TLS towards the hosts; nil sends plain HTTP.
    package var tls: TLS?
    package var auth: BasicAuth?
    /// Largest request body (stored gzip members, concatenated). Default 4 MiB.
    package var maxRequestBytes: Int
    /// Most events in one request. Default 50,000: half the receiving ingest's default
    /// `max_events_per_request`, which answers 413 (permanent) above its own limit.
    package var maxEventsPerRequest: Int
    /// Requests in flight to one host at most. Default 4.
    package var concurrencyPerHost: Int
    /// Time for one request, connect to last response byte. Default 30 s.
    package var requestTimeoutSeconds: Int64
    /// Bound on delivered events per second, for replaying a backlog gently; nil for none.
    package var maxEventsPerSecond: Int?
    /// Send a request that has no answer after several times the hosts' usual latency to a second host
    /// as well; the first answer settles it. Default true. Turn it off when a late duplicate on another
    /// host costs more than waiting for a stalled one (Logstash downstream keeps no `seen` table).
    package var hedge: Bool
    /// While a backlog older than 5 s drains, one lease in four takes the newest events (`FreshLane`).
    package var freshLane: FreshLane? = FreshLane(every: 4, backlogAge: .seconds(5))
    /// Backoff after a failure: first and largest delay (full jitter in between). Defaults 100 ms, 30 s.
    package var backoffBaseMilliseconds: Int64
    package var backoffCapMilliseconds: Int64

    package init(hosts: [String], tls: TLS? = nil, auth: BasicAuth? = nil, maxRequestBytes: Int = 4 << 20,
                maxEventsPerRequest: Int = 50_000, concurrencyPerHost: Int = 4, requestTimeoutSeconds: Int64 = 30, maxEventsPerSecond: Int? = nil,
                backoffBaseMilliseconds: Int64 = 100, backoffCapMilliseconds: Int64 = 30_000, hedge: Bool = true) {
        self.hedge = hedge
        self.hosts = hosts
        self.tls = tls
        self.auth = auth
        self.maxRequestBytes = maxRequestBytes
        self.maxEventsPerRequest = maxEventsPerRequest
        self.concurrencyPerHost = concurrencyPerHost
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.maxEventsPerSecond = maxEventsPerSecond
        self.backoffBaseMilliseconds = backoffBaseMilliseconds
        self.backoffCapMilliseconds = backoffCapMilliseconds
    }

    package struct TLS: Sendable, Hashable {
        /// PEM file of the CA that signs the hosts' certificates; nil uses the system's trust store.
        package var certificateAuthority: String?
        /// Client identity for mTLS: PEM certificate and key, or a PKCS#12 bundle and password.
        package var certificate: String?
        package var key: String?
        package var keystore: String?
        package var keystorePassword: String?
        /// Check that the certificate names the host. Default true.
        package var verifyHostname: Bool

        package init(certificateAuthority: String? = nil, certificate: String? = nil, key: String? = nil,
                    keystore: String? = nil, keystorePassword: String? = nil, verifyHostname: Bool = true) {
            self.certificateAuthority = certificateAuthority
            self.certificate = certificate
            self.key = key
            self.keystore = keystore
            self.keystorePassword = keystorePassword
            self.verifyHostname = verifyHostname
        }
    }

    package struct BasicAuth: Sendable, Hashable {
        package var username: String
        package var password: String
        package init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }
}

/// A downstream host parsed from `host:port`.
package struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package static let defaultPort = 9800

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; nil when malformed.
    package init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { port = Self.defaultPort } else {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2, let first = parts.first, !first.isEmpty else { return nil }
            host = String(first)
            if parts.count == 2 {
                guard let p = Int(parts[1]), (1...65535).contains(p) else { return nil }
                port = p
            } else {
                port = Self.defaultPort
            }
        }
        guard !host.isEmpty, !host.contains(" ") else { return nil }
    }

    /// `host:port` with IPv6 addresses in brackets, as a URL authority.
    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
