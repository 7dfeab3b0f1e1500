import FerryTestSupport
import Foundation
import Testing

/// Issue 17: SIGHUP applies the HTTP ingest's `auth` and limits to the running listener, without a restart
/// and without dropping its connections; what the listener took at its start is named as needing a restart.
@Suite(.serialized, .tags(.long), .timeLimit(.minutes(3))) struct IngestReloadTests {
    @Test func sighupAppliesNewCredentialsAndLimitsToTheRunningIngest() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-ingest-reload")
        defer { dir.remove() }
        let config = dir.appending("ferry.yaml")
        func configure(password: String, maxBody: String, extra: String = "") throws {
            try """
                input:
                  http:
                    auth: { username: edge, password: \(password) }
                    limits: { max_body_bytes: \(maxBody)\(extra) }
                """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try configure(password: "old-secret", maxBody: "1MiB")
        let ferry = FerryProcess(name: "ingest", dir: dir, extra: ["--config", config])
        defer { ferry.terminate() }
        try await ferry.start()
        let pid = try #require(ferry.child?.pid)
        func log() -> String { (try? String(contentsOfFile: ferry.log, encoding: .utf8)) ?? "" }
        func post(_ password: String, bytes: Int = 0) async throws -> String {
            let body = #"{"message":"\#(String(repeating: "x", count: bytes))"}"#
            return try await run("/usr/bin/curl", ["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-u", "edge:\(password)",
                                                   "-H", "Content-Type: application/json", "--data-binary", body, ferry.url]).output
        }
        #expect(try await post("old-secret", bytes: 4096) == "200")
        #expect(try await post("new-secret") == "401")

        try configure(password: "new-secret", maxBody: "1KiB")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("reload: input settings applied") }, "\(log().suffix(2000))")
        #expect(try await post("new-secret") == "200")
        #expect(try await post("old-secret") == "401", "the old password no longer works")
        #expect(try await post("new-secret", bytes: 4096) == "413", "the new body limit holds")

        // max_connections is the listener's: named as needing a restart; the rest stays as it is.
        try configure(password: "new-secret", maxBody: "1KiB", extra: ", max_connections: 10")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("input.http.limits.max_connections") }, "\(log().suffix(2000))")
        #expect(try await post("new-secret") == "200")
        let metrics = try await run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(ferry.adminPort)/metrics"]).output
        #expect(metrics.contains(#"ferry_config_reloads_total{result="applied"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"ferry_config_reloads_total{result="restart_needed"} 1"#))
    }
}
