import AsyncHTTPClient
package import FerryPipeline
import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// What one attempt to deliver a batch to one host came to.
package enum SendOutcome: Sendable, Equatable {
    /// 2xx: the host stored it.
    case delivered
    /// Connection refused/reset, timeout, TLS failure, 408, 429, 5xx: try again (after `retryAfter` if given).
    case retriable(reason: String, retryAfter: Duration?)
    /// Another 4xx (or an unexpected status): the host will never take these records.
    case permanent(status: Int, body: String)

    /// How Logstash's `logstash` output and Ferry read a status: 2xx delivered; 408, 429 and 5xx retriable;
    /// anything else permanent.
    package static func classify(status: Int, body: String, retryAfter: String?) -> SendOutcome {
        switch status {
        case 200..<300: return .delivered
        case 408, 429, 500..<600:
            let after = retryAfter.flatMap { Int($0.trimmingCharacters()) }.map { Duration.seconds(min(max($0, 0), 3600)) }
            return .retriable(reason: "HTTP \(status)", retryAfter: after)
        default:
            return .permanent(status: status, body: body)
        }
    }
}

/// Sends batches with AsyncHTTPClient (one connection pool per host): `POST /`, gzip NDJSON as stored,
/// `Ferry-Batch`, optional basic auth, over TLS when configured.
package final class HTTPSender: Sendable {
    let client: HTTPClient
    let endpoints: [Endpoint]
    let scheme: String
    let authorization: String?
    let timeout: TimeAmount

    package init(configuration: HTTPOutputConfiguration) throws(ConfigurationError) {
        var endpoints: [Endpoint] = []
        for host in configuration.hosts {
            guard let endpoint = Endpoint(host) else {
                throw ConfigurationError("output.http.hosts: \"\(host)\" is not host:port (IPv6 in brackets, e.g. [::1]:9800)")
            }
            endpoints.append(endpoint)
        }
        var clientConfiguration = HTTPClient.Configuration()
        if let tls = configuration.tls {
            clientConfiguration.tlsConfiguration = try Self.makeTLS(tls)
        }
        clientConfiguration.timeout = .init(connect: .seconds(min(10, configuration.requestTimeoutSeconds)),
                                            read: .seconds(configuration.requestTimeoutSeconds))
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.concurrencyPerHost)
        clientConfiguration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        self.endpoints = endpoints
        self.scheme = configuration.tls == nil ? "http" : "https"
        self.authorization = configuration.auth.map { "Basic " + Data("\($0.username):\($0.password)".utf8).base64EncodedString() }
        self.timeout = .seconds(configuration.requestTimeoutSeconds)
    }

    /// Shuts the client down, waiting at most `limit`: a stopping agent must not wait forever on a
    /// connection that never settles (a host that accepts and then says nothing).
    ///
    /// The shutdown runs in a task of its own that is left behind when the limit passes: a task group
    /// would wait for it at its end, which is the wait this avoids.
    package func shutdown(limit: Duration = .seconds(5)) async {
        final class Waiter: Sendable {
            let continuation = Mutex<CheckedContinuation<Void, Never>?>(nil)
            func resume() { continuation.withLock { $0.take() }?.resume() }
        }
        let waiter = Waiter()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiter.continuation.withLock { $0 = continuation }
            let resume: @Sendable () -> Void = { waiter.resume() }
            Task { [client] in
                try? await client.shutdown()
                resume()
            }
            Task {
                try? await Task.sleep(for: limit)
                resume()
            }
        }
    }

    package func send(_ batch: OutboundBatch, to index: Int) async -> SendOutcome {
        var request = HTTPClientRequest(url: "\(scheme)://\(endpoints[index])/")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.headers.add(name: "Content-Encoding", value: "gzip")
        request.headers.add(name: "Ferry-Batch", value: batch.batchID.description)
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.body = .bytes(batch.body)
        do {
            let response = try await client.execute(request, timeout: timeout)
            let status = Int(response.status.code)
            var excerpt = ""
            if !(200..<300).contains(status) {
                let body = (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer()
                excerpt = String(buffer: body.getSlice(at: body.readerIndex, length: min(body.readableBytes, 512)) ?? body)
            } else {
                for try await _ in response.body {}  // read to the end so the connection is reused
            }
            return .classify(status: status, body: excerpt, retryAfter: response.headers.first(name: "Retry-After"))
        } catch {
            return .retriable(reason: "\(error)", retryAfter: nil)
        }
    }

    static func makeTLS(_ tls: HTTPOutputConfiguration.TLS) throws(ConfigurationError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = tls.certificateAuthority {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            }
            if let keystore = tls.keystore {
                let bundle = try NIOSSLPKCS12Bundle(file: keystore, passphrase: Array((tls.keystorePassword ?? "").utf8))
                configuration.certificateChain = bundle.certificateChain.map { .certificate($0) }
                configuration.privateKey = .privateKey(bundle.privateKey)
            } else if let certificate = tls.certificate, let key = tls.key {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
        } catch {
            throw ConfigurationError("cannot load output.http.tls files (\(error)); check the paths and the keystore password")
        }
        if !tls.verifyHostname { configuration.certificateVerification = .noHostnameVerification }
        return configuration
    }
}

