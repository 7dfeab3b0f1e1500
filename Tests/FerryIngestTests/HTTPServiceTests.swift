@testable import FerryIngest
import FerryTestSupport
import Foundation
import Testing

/// `HTTPService`, Ferry's runner of a Hummingbird router without Hummingbird's 1 Hz date timer, and the
/// `Date` header it sets.
@Suite struct HTTPServiceTests {
    /// The C library's `strftime` in the C locale is the oracle: RFC 9110's IMF-fixdate is its
    /// "%a, %d %b %Y %H:%M:%S GMT" of the UTC time.
    @Test func theDateHeaderIsIMFFixdateAsTheCLibraryWritesIt() {
        func libc(_ seconds: Int) -> String {
            var time = time_t(seconds)
            var parts = tm()
            gmtime_r(&time, &parts)
            var buffer = [CChar](repeating: 0, count: 64)
            let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
            return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        #expect(HTTPDate.format(epochSeconds: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110's own example")
        var generator = SystemRandomNumberGenerator()
        let samples = [0, 59, 86_399, 86_400, 951_782_400, 4_102_444_799, Int(Date().timeIntervalSince1970)]
            + (0..<2000).map { _ in Int.random(in: 0...4_102_444_800, using: &generator) }
        for seconds in samples {
            #expect(HTTPDate.format(epochSeconds: seconds) == libc(seconds), "\(seconds)")
        }
        // Now: the coarse clock may lag the fine one by a tick, so one of the two neighbouring seconds.
        let now = Int(Date().timeIntervalSince1970)
        #expect([libc(now - 1), libc(now), libc(now + 1)].contains(HTTPDate.now()))
    }

    /// The ingest runs on it: answers carry `Date` and `Server`, and a malformed request still gets its 400.
    @Test func ingestAnswersCarryDateAndServerHeaders() async throws {
        try await withIngest { ingest in
            let result = try await run("/usr/bin/curl", ["-sS", "-D", "-", "-o", "/dev/null", "--max-time", "10",
                                                         "-H", "Content-Type: application/x-ndjson", "--data-binary", #"{"a":1}"#, ingest.url])
            let headers = result.output.lowercased()
            #expect(headers.hasPrefix("http/1.1 200"), "\(result.output)")
            #expect(headers.contains("\r\nserver: ferry\r\n"), "\(result.output)")
            let date = try #require(result.output.split(separator: "\r\n").first { $0.lowercased().hasPrefix("date: ") })
            #expect(date.hasSuffix(" GMT") && date.count == "Date: Sun, 06 Nov 1994 08:49:37 GMT".count, "\(date)")

            // Not HTTP at all: HummingbirdCore's own 400, as under Hummingbird's Application.
            let port = ingest.port
            let answer = try await onThread { () -> String in
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                connection.send(Array("NOT HTTP\r\n\r\n".utf8))
                return String(decoding: connection.readToEnd(), as: UTF8.self)
            }
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        }
    }
}
