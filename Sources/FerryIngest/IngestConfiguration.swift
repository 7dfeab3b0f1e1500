/// The HTTP ingest's settings. Defaults are the safe ones: loopback, bounded sizes, bounded time.
package struct IngestConfiguration: Sendable, Hashable {
    /// Where to listen. Default `127.0.0.1:9800`, the Logstash `logstash` input's port.
    package var host: String
    package var port: Int

    /// TLS. `nil` means plain HTTP, which is allowed only on loopback unless `allowPlaintext` is set.
    package var tls: TLS?
    /// Set from an explicit `tls: false` in the config: plain HTTP on a non-loopback address (logged as a warning).
    package var allowPlaintext: Bool
    /// Basic authentication; `nil` accepts every client (that TLS let through).
    package var auth: BasicAuth?
    package var limits: Limits

    package init(host: String = "127.0.0.1", port: Int = 9800, tls: TLS? = nil, allowPlaintext: Bool = false,
                auth: BasicAuth? = nil, limits: Limits = Limits()) {
        self.host = host
        self.port = port
        self.tls = tls
        self.allowPlaintext = allowPlaintext
        self.auth = auth
        self.limits = limits
    }

    package struct TLS: Sendable, Hashable {
        /// Where the server's identity comes from.
        package enum Identity: Sendable, Hashable {
            /// PEM certificate chain and PEM private key.
            case pem(certificate: String, key: String)
            /// A PKCS#12 bundle and its password.
            case pkcs12(path: String, password: String)
        }

        /// Whether clients must present a certificate signed by `certificateAuthorities`.
        package enum ClientAuth: String, Sendable, Hashable, CaseIterable {
            case none, optional, required
        }

        package var identity: Identity
        package var clientAuth: ClientAuth
        /// PEM files of the CAs that sign client certificates (needed unless `clientAuth` is `none`).
        package var certificateAuthorities: [String]

        package init(identity: Identity, clientAuth: ClientAuth = .none, certificateAuthorities: [String] = []) {
            self.identity = identity
            self.clientAuth = clientAuth
            self.certificateAuthorities = certificateAuthorities
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

    package struct Limits: Sendable, Hashable {
        /// Most bytes of a request body as sent (compressed or not). Default 16 MiB.
        package var maxBodyBytes: Int
        /// Most bytes of a body once decompressed: stops gzip bombs early. Default 128 MiB.
        package var maxDecompressedBytes: Int
        /// Most bytes of one event. Default 1 MiB.
        package var maxEventBytes: Int
        /// Most events in one request. Default 100,000.
        package var maxEventsPerRequest: Int
        /// Time allowed to receive a request, head and body, once its first byte arrived: a slow client
        /// (slowloris) is cut after it. Default 30 s.
        package var requestTimeoutSeconds: Int64
        /// Time a kept-alive connection may stay idle. Default 60 s.
        package var idleTimeoutSeconds: Int64
        /// Most connections open at once; more wait in the listen backlog. Default 1,024.
        package var maxConnections: Int

        package init(maxBodyBytes: Int = 16 << 20, maxDecompressedBytes: Int = 128 << 20, maxEventBytes: Int = 1 << 20,
                    maxEventsPerRequest: Int = 100_000, requestTimeoutSeconds: Int64 = 30, idleTimeoutSeconds: Int64 = 60,
                    maxConnections: Int = 1024) {
            self.maxBodyBytes = maxBodyBytes
            self.maxDecompressedBytes = maxDecompressedBytes
            self.maxEventBytes = maxEventBytes
            self.maxEventsPerRequest = maxEventsPerRequest
            self.requestTimeoutSeconds = requestTimeoutSeconds
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.maxConnections = maxConnections
        }
    }

    /// True for addresses that only this host can reach.
    package var isLoopback: Bool { isLoopbackHost(host) }
}

/// True for a host name or address that only this host can reach: the one rule of every listener
/// (ingest, syslog, RELP, admin) for when clear text needs an explicit `tls: false`.
package func isLoopbackHost(_ host: String) -> Bool {
    host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
}
