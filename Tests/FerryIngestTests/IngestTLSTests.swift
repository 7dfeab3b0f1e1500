import AsyncHTTPClient
@testable import FerryIngest
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import NIOSSL
import Testing

/// Real TLS: certificates made by tools/gen-certs (openssl), curl and AsyncHTTPClient as clients.
@Suite struct IngestTLSTests {
    let event = Data(#"{"secure":true}"# .utf8 + [0x0A])

    func tls(_ certs: TemporaryDirectory, clientAuth: IngestConfiguration.TLS.ClientAuth = .none, pkcs12: Bool = false) -> IngestConfiguration.TLS {
        IngestConfiguration.TLS(
            identity: pkcs12 ? .pkcs12(path: certs.appending("server.p12"), password: "test-pass")
                             : .pem(certificate: certs.appending("server.pem"), key: certs.appending("server.key")),
            clientAuth: clientAuth,
            certificateAuthorities: clientAuth == .none ? [] : [certs.appending("ca.pem")]
        )
    }

    @Test func tlsWithPEMOrPKCS12Identity() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        for pkcs12 in [false, true] {
            try await withIngest({ $0.tls = tls(certs, pkcs12: pkcs12) }) { ingest in
                let url = "https://localhost:\(ingest.port)/"
                let ok = try await curl(["--cacert", certs.appending("ca.pem"), "-H", "Content-Type: application/x-ndjson", url], body: event)
                #expect(ok.status == 200, "pkcs12: \(pkcs12)")
                // A client that does not trust the CA refuses the server.
                let untrusted = try await curl(["-H", "Content-Type: application/x-ndjson", url], body: event)
                #expect(untrusted.status == 0 && untrusted.exit != 0)
                // Plain HTTP to the TLS port gets no HTTP answer and stores nothing.
                let plain = try await curl(["-H", "Content-Type: application/x-ndjson", "http://127.0.0.1:\(ingest.port)/"], body: event)
                #expect(plain.status != 200)
                #expect(try ingest.storedEvents().count == 1)
            }
        }
    }

    /// Over TLS, requests pipelined in one write across the raw front's switch to the HTTP pipeline (a
    /// plain one it takes, a chunked one it passes up, a plain one behind it for `FastIngest`): each
    /// answered, in order, and each stored once. openssl's s_client keeps reading after its input ends
    /// until the server closes the idle connection.
    @Test func pipelinedRequestsOverTLSCrossTheRawFront() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        try await withIngest({ $0.tls = tls(certs); $0.limits.idleTimeoutSeconds = 1 }) { ingest in
            let requests = FastIngestTests.post(FastIngestTests.events("a", 1)) + FastIngestTests.chunkedPost(FastIngestTests.events("b", 2))
                + FastIngestTests.post(FastIngestTests.events("c", 3))
            let result = try await run("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(ingest.port)", "-servername", "localhost",
                                                            "-CAfile", certs.appending("ca.pem"), "-verify_return_error", "-quiet"],
                                       input: Data(requests.utf8))
            let answers = result.output
            let positions = [#"{"stored":1}"#, #"{"stored":2}"#, #"{"stored":3}"#].map { answers.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil }, "\(answers) \(result.errors)")
            #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "\(answers)")
            let tags = try ingest.storedEvents().map { try #require($0.firstMatch(of: /"r":"(.)"/)).1 }
            #expect(tags.joined() == "abbccc")
        }
    }

    @Test func requiredClientCertificatesAreEnforced() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        try await withIngest({ $0.tls = tls(certs, clientAuth: .required) }) { ingest in
            let url = "https://localhost:\(ingest.port)/"
            let base = ["--cacert", certs.appending("ca.pem"), "-H", "Content-Type: application/x-ndjson"]
            let missing = try await curl(base + [url], body: event)
            #expect(missing.status != 200 && missing.exit != 0)
            let unknown = try await curl(base + ["--cert", certs.appending("rogue-client.pem"), "--key", certs.appending("rogue-client.key"), url], body: event)
            #expect(unknown.status != 200 && unknown.exit != 0)
            #expect(ingest.queue.stats.appendedEvents == 0)
            let known = try await curl(base + ["--cert", certs.appending("client.pem"), "--key", certs.appending("client.key"), url], body: event)
            #expect(known.status == 200)

            // The same with AsyncHTTPClient and a PKCS#12 client identity (what the balancer will use).
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(certs.appending("ca.pem"))
            let bundle = try NIOSSLPKCS12Bundle(file: certs.appending("client.p12"), passphrase: Array("test-pass".utf8))
            configuration.certificateChain = bundle.certificateChain.map { .certificate($0) }
            configuration.privateKey = .privateKey(bundle.privateKey)
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: configuration))
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/x-ndjson")
                request.body = .bytes(ByteBuffer(data: event))
                let response = try await client.execute(request, timeout: .seconds(10))
                #expect(response.status == .ok)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
            #expect(try ingest.storedEvents().count == 2)
        }
    }

    @Test func optionalClientCertificatesAcceptBothButRefuseUnknownOnes() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        try await withIngest({ $0.tls = tls(certs, clientAuth: .optional) }) { ingest in
            let url = "https://localhost:\(ingest.port)/"
            let base = ["--cacert", certs.appending("ca.pem"), "-H", "Content-Type: application/x-ndjson"]
            let without = try await curl(base + [url], body: event)
            #expect(without.status == 200)
            let known = try await curl(base + ["--cert", certs.appending("client.pem"), "--key", certs.appending("client.key"), url], body: event)
            #expect(known.status == 200)
            let unknown = try await curl(base + ["--cert", certs.appending("rogue-client.pem"), "--key", certs.appending("rogue-client.key"), url], body: event)
            #expect(unknown.status != 200)
            #expect(try ingest.storedEvents().count == 2)
        }
    }

    @Test func aMissingCertificateFileFailsAtStartWithTheKeyName() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let logs = RecordingLogHandler.Store()
        let queue = try Queue.open(at: dir.path, logger: logs.logger())
        defer { queue.close() }
        do {
            _ = try IngestServer(configuration: IngestConfiguration(tls: .init(identity: .pem(certificate: "/nonexistent.pem", key: "/nonexistent.key"))),
                                 queue: queue, logger: logs.logger())
            Issue.record("started with a missing certificate")
        } catch {
            #expect(error.message.contains("input.http.tls"))
        }
    }
}
