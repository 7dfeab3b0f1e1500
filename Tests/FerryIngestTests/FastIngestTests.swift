import Foundation
import FerryTestSupport
import Testing

@testable import FerryIngest

/// The event-loop paths (`RawIngestFront` for a whole plain request in one read, `FastIngest` for the
/// rest of a connection it passed up) next to Hummingbird's router on one connection: answers in request
/// order, their own headers, and the idle timeout seeing their traffic.
@Suite struct FastIngestTests {
    /// `n` events as an NDJSON body.
    static func events(_ tag: String, _ n: Int) -> String {
        (1...n).map { #"{"r":"\#(tag)","i":\#($0)}"# + "\n" }.joined()
    }

    static func post(_ body: String) -> String {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// Writes `requests` on a new connection (then half-closes it, with `halfClose`) and returns what came
    /// back: up to `marker`, or all of it until the server closes.
    static func exchange(port: Int, _ requests: String, halfClose: Bool = false, until marker: String? = nil) async throws -> String {
        try await onThread { () throws -> String in
            let connection = try RawConnection(port: port)
            defer { connection.close() }
            connection.send(Array(requests.utf8))
            if halfClose { connection.shutdownWrite() }
            return marker.map { connection.read(until: $0) } ?? String(decoding: connection.readToEnd(), as: UTF8.self)
        }
    }

    static func chunkedPost(_ body: String) -> String {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(body.utf8.count, radix: 16) + "\r\n\(body)\r\n0\r\n\r\n"
    }

    /// Six pipelined requests in one write, taken by every path (the first two by the raw front; the
    /// chunked one and the unknown route by Hummingbird; the small ones after them by `FastIngest`, once the
    /// raw front passes the connection up): the answers come in request order, and the events are stored in it.
    @Test func pipelinedRequestsAreAnsweredInOrderAcrossBothPaths() async throws {
        try await withIngest { ingest in
            let requests = Self.post(Self.events("a", 1)) + Self.post(Self.events("d", 5)) + Self.chunkedPost(Self.events("b", 2)) + Self.post(Self.events("c", 3))
                + "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n" + Self.post(Self.events("e", 4))
            let answers = try await Self.exchange(port: ingest.port, requests, until: #"{"stored":4}"#)
            let order = [#"{"stored":1}"#, #"{"stored":5}"#, #"{"stored":2}"#, #"{"stored":3}"#, "HTTP/1.1 404", #"{"stored":4}"#]
            let positions = order.map { answers.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil }, "\(answers)")
            #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "\(answers)")
            let stored = try ingest.storedEvents()
            let tags = try stored.map { try #require($0.firstMatch(of: /"r":"(.)"/)).1 }
            #expect(tags.joined() == "adddddbbccceeee")
        }
    }

    /// A client that sends its requests and then closes its sending side still reads every answer: the
    /// half-close reaches Hummingbird (which would end the connection) only after the answers under way.
    @Test func aClientThatHalfClosesAfterItsRequestsReadsTheirAnswers() async throws {
        try await withIngest { ingest in
            let answers = try await Self.exchange(port: ingest.port, Self.post(Self.events("a", 1)) + Self.post(Self.events("b", 2)), halfClose: true)
            #expect(answers.contains(#"{"stored":1}"#) && answers.contains(#"{"stored":2}"#), "\(answers)")
            #expect(try ingest.storedEvents().count == 3)
        }
    }

    /// A request the HTTP decoder cannot parse, pipelined after one taken here: Hummingbird's 400 comes
    /// after this path's answer, not in its place.
    @Test func aParseErrorAfterAPendingAnswerIsAnsweredSecond() async throws {
        try await withIngest { ingest in
            let answers = try await Self.exchange(port: ingest.port, Self.post(Self.events("a", 1)) + "NOT HTTP AT ALL\r\n\r\n")
            let stored = try #require(answers.range(of: #"{"stored":1}"#), "\(answers)")
            let refused = try #require(answers.range(of: "HTTP/1.1 400"), "\(answers)")
            #expect(stored.lowerBound < refused.lowerBound, "\(answers)")
        }
    }

    /// After a request that asks to close, Hummingbird ends the connection: a request pipelined behind it
    /// is neither taken nor stored (it could never be answered).
    @Test func nothingIsTakenAfterARequestThatAsksToClose() async throws {
        try await withIngest { ingest in
            let closing = Self.post(Self.events("a", 1)).replacingOccurrences(of: "Host: x\r\n", with: "Host: x\r\nConnection: close\r\n")
            let answers = try await Self.exchange(port: ingest.port, closing + Self.post(Self.events("b", 2)))
            #expect(answers.contains(#"{"stored":1}"#), "\(answers)")
            #expect(!answers.contains(#"{"stored":2}"#), "\(answers)")
            #expect(try ingest.storedEvents().count == 1)
        }
    }

    /// An answer of the raw front (one write, one read) carries what Hummingbird's would: length, type,
    /// date, server.
    @Test func answersCarryLengthTypeDateAndServer() async throws {
        try await withIngest { ingest in
            let answer = try await Self.exchange(port: ingest.port, Self.post(Self.events("a", 2)), until: "}")
            let head = answer.lowercased()
            #expect(head.hasPrefix("http/1.1 200 ok\r\n"), "\(answer)")
            #expect(head.contains("content-length: 12\r\n"), "\(answer)")
            #expect(head.contains("content-type: application/json\r\n"), "\(answer)")
            #expect(head.contains("server: ferry\r\n"), "\(answer)")
            #expect(head.contains("date: "), "\(answer)")
            #expect(answer.hasSuffix(#"{"stored":2}"#), "\(answer)")
        }
    }

    /// The idle timeout (`ConnectionIdleTimeout`) hears of the requests the raw front takes below it: a
    /// connection kept busy with them for well past the idle timeout stays open. (Were it not told of
    /// them, it would see an idle connection and close it two seconds after it opened.)
    /// Counted in requests, not in time: a loaded machine makes the run longer, never shorter.
    @Test func aConnectionBusyWithSmallRequestsOutlivesTheIdleTimeout() async throws {
        try await withIngest({ $0.limits.idleTimeoutSeconds = 2 }) { ingest in
            let port = ingest.port
            let (answered, seconds) = try await onThread { () throws -> (Int, Double) in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                let start = Date()
                var answered = 0
                for n in 1...14 {
                    guard connection.send(Array(Self.post(Self.events("k\(n)", 1)).utf8)),
                          connection.read(until: #"{"stored":1}"#).contains(#"{"stored":1}"#)
                    else { break }
                    answered += 1
                    usleep(250_000)  // a client that sends four times a second, not a wait for a condition
                }
                return (answered, Date().timeIntervalSince(start))
            }
            #expect(answered == 14, "the connection closed after \(answered) answers, \(seconds) s")
            #expect(seconds > 3)  // 14 requests a quarter of a second apart: past the idle timeout, on one connection
            #expect(try ingest.storedEvents().count == answered)
        }
    }

    /// A connection left idle after a request taken by the raw front is closed once the idle timeout has
    /// passed (Hummingbird's own idle timeout is off: it would not hear of those requests).
    @Test func anIdleConnectionIsClosedAfterTheIdleTimeout() async throws {
        try await withIngest({ $0.limits.idleTimeoutSeconds = 1 }) { ingest in
            let port = ingest.port
            let (answer, rest, seconds) = try await onThread { () throws -> (String, [UInt8], Double) in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                connection.send(Array(Self.post(Self.events("i", 1)).utf8))
                let answer = connection.read(until: #"{"stored":1}"#)
                let start = Date()
                let rest = connection.readToEnd()  // returns at the server's close, or after its 15 s timeout
                return (answer, rest, Date().timeIntervalSince(start))
            }
            #expect(answer.contains(#"{"stored":1}"#), "\(answer)")
            #expect(rest.isEmpty)
            #expect(seconds > 0.5 && seconds < 12, "closed after \(seconds) s")
        }
    }
}
