import AsyncHTTPClient
@testable import FerryIngest
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

@Suite struct IngestServerTests {
    let lines = (0..<50).map { #"{"id":"e\#($0)","host":"edge-1","message":"link up","n":\#($0)}"# }
    var ndjson: String { lines.joined(separator: "\n") + "\n" }

    @Test func curlPostsGzipNDJSONAndTheEventsAreStored() async throws {
        try await withIngest { ingest in
            let answer = try await curl(["-H", "Content-Type: application/x-ndjson", "-H", "Content-Encoding: gzip", ingest.url],
                                        body: gzipped(ndjson))
            #expect(answer.status == 200)
            #expect(answer.body == #"{"stored":50}"#)
            #expect(try ingest.storedEvents() == lines)
        }
    }

    @Test func aLogstashStyleClientIsUnderstood() async throws {
        // What the Logstash `logstash` output sends: POST /, gzip NDJSON, basic auth, keep-alive.
        try await withIngest({ $0.auth = .init(username: "logstash", password: "s3cret") }) { ingest in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                for round in 0..<3 {
                    var request = HTTPClientRequest(url: ingest.url)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/x-ndjson")
                    request.headers.add(name: "Content-Encoding", value: "gzip")
                    request.headers.add(name: "Authorization", value: "Basic " + Data("logstash:s3cret".utf8).base64EncodedString())
                    request.body = .bytes(ByteBuffer(data: gzipped(lines.map { $0.replacingOccurrences(of: "link up", with: "round \(round)") }.joined(separator: "\n") + "\n")))
                    let response = try await client.execute(request, timeout: .seconds(10))
                    #expect(response.status == .ok)
                    _ = try await response.body.collect(upTo: 1 << 16)
                }
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
            #expect(try ingest.storedEvents().count == 150)
        }
    }

    @Test func jsonAndTextBodiesAreAccepted() async throws {
        try await withIngest { ingest in
            let json = try await curl(["-H", "Content-Type: application/json", ingest.url], body: Data(#"[{"a":1},{"b":2}]"#.utf8))
            #expect(json.status == 200)
            let text = try await curl(["-H", "Content-Type: text/plain", ingest.url], body: Data("hello\nworld\n".utf8))
            #expect(text.status == 200)
            #expect(try ingest.storedEvents() == [#"{"a":1}"#, #"{"b":2}"#, #"{"message":"hello"}"#, #"{"message":"world"}"#])
        }
    }

    /// The refusals of `badInputIsRefusedAndStoresNothing`: name, curl headers, body, status, reason.
    static let refusals: [(String, [String], Data, Int, String)] = [
        ("truncated gzip", ["-H", "Content-Encoding: gzip"], Data(gzipped(String(repeating: "{\"a\":1}\n", count: 200)).dropLast(12)), 400, "invalid_gzip"),
        ("invalid UTF-8", [], Data("{\"a\":\"".utf8) + Data([0xC3, 0x28]) + Data("\"}\n".utf8), 400, "invalid_utf8"),
        ("invalid JSON at line 3", [], Data("{\"a\":1}\n{\"a\":2}\n{\"a\":}\n".utf8), 400, "invalid_json"),
        ("empty body", [], Data(), 400, "empty_body"),
        ("unsupported type", ["-H", "Content-Type: application/xml"], Data("<a/>".utf8), 415, "unsupported_media_type"),
        ("unsupported encoding", ["-H", "Content-Encoding: br"], Data("{}".utf8), 415, "unsupported_encoding"),
        ("bad Ferry-Batch", ["-H", "Ferry-Batch: nonsense"], Data("{\"a\":1}\n".utf8), 400, "invalid_batch_id"),
    ]

    /// Each refusal: the status, the reason in the JSON body, and a queue left exactly as it was. Each case
    /// three times: with a `Content-Length` (the raw front, `RawIngestFront`), with a `Connection` option the
    /// raw front leaves to the HTTP pipeline (the event-loop path, `FastIngest`), and chunked (Hummingbird's router).
    @Test(arguments: refusals
        + refusals.map { ($0.0 + ", through FastIngest", $0.1 + ["-H", "Connection: keep-alive, x-test"], $0.2, $0.3, $0.4) }
        + refusals.map { ($0.0 + ", chunked", $0.1 + ["-H", "Transfer-Encoding: chunked"], $0.2, $0.3, $0.4) })
    func badInputIsRefusedAndStoresNothing(_ name: String, _ headers: [String], _ body: Data, _ status: Int, _ reason: String) async throws {
        try await withIngest { ingest in
            _ = try await curl(["-H", "Content-Type: application/x-ndjson", ingest.url], body: Data(#"{"before":1}"#.utf8))
            let before = ingest.queue.stats
            var args = headers
            if !headers.contains(where: { $0.hasPrefix("Content-Type") }) { args += ["-H", "Content-Type: application/x-ndjson"] }
            let answer = try await curl(args + [ingest.url], body: body)
            #expect(answer.status == status, "\(name): \(answer.body)")
            #expect(answer.body.contains(#""error":"\#(reason)""#), "\(name): \(answer.body)")
            if reason == "invalid_json" { #expect(answer.body.contains(#""line":3"#)) }
            #expect(ingest.queue.stats.appendedEvents == before.appendedEvents, "\(name)")
            #expect(try ingest.storedEvents() == [#"{"before":1}"#], "\(name)")
        }
    }

    @Test func tooLargeBodiesAndGzipBombsAre413() async throws {
        try await withIngest({ $0.limits.maxBodyBytes = 50_000; $0.limits.maxDecompressedBytes = 1 << 20 }) { ingest in
            let big = try await curl(["-H", "Content-Type: application/x-ndjson", ingest.url],
                                     body: Data(String(repeating: "{\"a\":1}\n", count: 10_000).utf8))
            #expect(big.status == 413)
            let bomb = gzipped(String(repeating: " ", count: 30 << 20), level: 9)
            #expect(bomb.count < 50_000)
            let exploded = try await curl(["-H", "Content-Type: application/x-ndjson", "-H", "Content-Encoding: gzip", ingest.url], body: bomb)
            #expect(exploded.status == 413)
            #expect(exploded.body.contains("decompressed"))
            #expect(ingest.queue.stats.appendedEvents == 0)
        }
    }

    /// What Python's `http.client`, Logstash's output and most libraries do: write the whole body, then read.
    /// Closing at the 413 made the kernel reset the connection under the client's writes, and a reset is
    /// retriable, so such a client would resend the same request forever.
    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func aClientThatWritesAWhole60MBBodyBeforeReadingReadsThe413(chunked: Bool) async throws {
        try await withIngest { ingest in
            let port = ingest.port
            let (sentAll, answer) = try await onThread { () -> (Bool, String) in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                let total = 60_000_000
                let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(total)"
                var sentAll = connection.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\(framing)\r\n\r\n".utf8))
                // 1 MiB of valid 1 KiB events: ~58,000 in 60 MB, under max_events_per_request, so the body's size is what is refused.
                let line = "{\"a\":\"" + String(repeating: "x", count: 1015) + "\"}\n"
                let lines = Array(String(repeating: line, count: 1024).utf8)
                var sent = 0
                while sentAll && sent < total {
                    let piece = lines.prefix(total - sent)
                    sentAll = connection.send(chunked ? Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + [0x0D, 0x0A] : Array(piece))
                    sent += piece.count
                }
                if sentAll && chunked { sentAll = connection.send(Array("0\r\n\r\n".utf8)) }
                return (sentAll, String(decoding: connection.readToEnd(), as: UTF8.self))
            }
            #expect(sentAll, "the server reset the connection under the client's writes")
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.contains(#""error":"body_too_large""#))
            #expect(ingest.queue.stats.appendedEvents == 0)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func expectContinueGets413AtOnceOrContinue() async throws {
        try await withIngest({ $0.limits.maxBodyBytes = 1000 }) { ingest in
            let port = ingest.port
            let (refused, continued, stored) = try await onThread { () -> (String, String, String) in
                let tooLarge = try RawConnection(port: port)
                defer { tooLarge.close() }
                tooLarge.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n".utf8))
                let refused = tooLarge.readToEnd()  // the answer and end of file, without a byte of body sent
                let fits = try RawConnection(port: port)
                defer { fits.close() }
                let event = "{\"a\":1}\n"
                fits.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: \(event.utf8.count)\r\nExpect: 100-continue\r\n\r\n".utf8))
                let continued = fits.read(until: "\r\n\r\n")
                fits.send(Array(event.utf8))
                return (String(decoding: refused, as: UTF8.self), continued, fits.read(until: "}"))
            }
            #expect(refused.hasPrefix("HTTP/1.1 413"), "\(refused)")
            #expect(!refused.contains("100 Continue"))
            #expect(continued.hasPrefix("HTTP/1.1 100 Continue"), "\(continued)")
            #expect(stored.hasPrefix("HTTP/1.1 200"), "\(stored)")
            #expect(try ingest.storedEvents() == [#"{"a":1}"#])
        }
    }

    @Test func wrongOrMissingPasswordIs401() async throws {
        try await withIngest({ $0.auth = .init(username: "ferry", password: "right") }) { ingest in
            let ct = ["-H", "Content-Type: application/x-ndjson"]
            let none = try await curl(ct + [ingest.url], body: Data("{}".utf8))
            let wrong = try await curl(ct + ["-u", "ferry:wrong", ingest.url], body: Data("{}".utf8))
            let prefix = try await curl(ct + ["-u", "ferry:righ", ingest.url], body: Data("{}".utf8))
            #expect(none.status == 401 && wrong.status == 401 && prefix.status == 401)
            #expect(ingest.queue.stats.appendedEvents == 0)
            let right = try await curl(ct + ["-u", "ferry:right", ingest.url], body: Data("{}".utf8))
            #expect(right.status == 200)
        }
    }

    @Test func aFullQueueIs429WithRetryAfter() async throws {
        try await withIngest(queueConfiguration: QueueConfiguration(maxBytes: 4096)) { ingest in
            var statuses: [Int] = []
            var retryAfter = false
            for i in 0..<200 {
                let body = Data((0..<20).map { #"{"i":\#(i),"j":\#($0),"pad":"\#(UUID().uuidString)"}"# }.joined(separator: "\n").utf8)
                let out = try TemporaryDirectory(prefix: "ferry-h")
                defer { out.remove() }
                let answer = try await curl(["-H", "Content-Type: application/x-ndjson", "-D", out.appending("headers"), ingest.url], body: body)
                statuses.append(answer.status)
                if answer.status == 429 {
                    let headers = (try? String(contentsOfFile: out.appending("headers"), encoding: .utf8)) ?? ""
                    retryAfter = headers.lowercased().contains("retry-after: 5")
                    #expect(answer.body.contains("queue_full"))
                    break
                }
            }
            #expect(statuses.last == 429)
            #expect(retryAfter)
            #expect(statuses.dropLast().allSatisfy { $0 == 200 })
            #expect(try ingest.storedEvents().count == (statuses.count - 1) * 20)
        }
    }

    @Test func aRepeatedFerryBatchIsStoredOnce() async throws {
        try await withIngest { ingest in
            let args = ["-H", "Content-Type: application/x-ndjson", "-H", "Ferry-Batch: 0a1b2c3d4e5f6a7b/10-12", ingest.url]
            let first = try await curl(args, body: Data(ndjson.utf8))
            let second = try await curl(args, body: Data(ndjson.utf8))
            #expect(first.status == 200 && second.status == 200)
            #expect(second.body.contains(#""duplicate":true"#))
            #expect(try ingest.storedEvents() == lines)
        }
    }

    @Test func aClientThatDisconnectsMidBodyLeavesNothing() async throws {
        try await withIngest { ingest in
            let port = ingest.port
            let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n"
            try await onThread {
                let connection = try RawConnection(port: port)
                connection.send(Array(head.utf8) + Array(String(repeating: "{\"a\":1}\n", count: 500).utf8))
                connection.close()
            }
            #expect(try await eventually(timeout: .seconds(10)) { ingest.logs.all.contains { $0.message == "ingest request aborted" } })
            #expect(ingest.queue.stats.appendedEvents == 0)
        }
    }

    @Test func aSlowClientIsCutByTheRequestTimeout() async throws {
        try await withIngest({ $0.limits.requestTimeoutSeconds = 1; $0.limits.idleTimeoutSeconds = 1 }) { ingest in
            let port = ingest.port
            // Slow body: one byte every 100 ms, which an idle timeout alone would never cut.
            let bodyCut = try await onThread { () -> Bool in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n"
                connection.send(Array(head.utf8))
                let start = Date()
                for byte in Array(String(repeating: "{\"a\":1}\n", count: 125).utf8) {
                    if !connection.send([byte]) { return Date().timeIntervalSince(start) < 5 }
                    usleep(100_000)  // the slowness under test, not a wait for a condition
                    if Date().timeIntervalSince(start) > 8 { return false }
                }
                return false
            }
            #expect(bodyCut)
            // Slow head: a header line sent a byte at a time.
            let headCut = try await onThread { () -> Bool in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                let start = Date()
                for byte in Array("POST / HTTP/1.1\r\nX-Slow: \(String(repeating: "a", count: 200))".utf8) {
                    if !connection.send([byte]) { return Date().timeIntervalSince(start) < 5 }
                    usleep(100_000)
                    if Date().timeIntervalSince(start) > 8 { return false }
                }
                return false
            }
            #expect(headCut)
            #expect(ingest.queue.stats.appendedEvents == 0)
        }
    }

    @Test func aNonLoopbackAddressWithoutTLSIsRefusedUnlessExplicit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let logs = RecordingLogHandler.Store()
        let queue = try Queue.open(at: dir.path, logger: logs.logger())
        defer { queue.close() }
        #expect(throws: ConfigurationError.self) {
            _ = try IngestServer(configuration: IngestConfiguration(host: "0.0.0.0", port: 0), queue: queue, logger: logs.logger())
        }
        _ = try IngestServer(configuration: IngestConfiguration(host: "0.0.0.0", port: 0, allowPlaintext: true), queue: queue, logger: logs.logger())
        #expect(logs.all.contains { $0.level == .warning && $0.message.contains("without TLS") })
    }
}
