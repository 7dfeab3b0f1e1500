import FerryTestSupport
import Foundation
import Testing

/// Issue 17: SIGHUP applies the HTTP ingest's `auth` and limits, and the syslog and RELP inputs' limits, to
/// the running listeners, without a restart and without dropping their connections; what a listener took
/// at its start is named as needing a restart.
@Suite(.serialized, .tags(.long), .timeLimit(.minutes(3))) struct InputReloadTests {
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

        // max_connections is the listener's: named as needing a restart; the new password that comes with
        // it is applied all the same.
        try configure(password: "third-secret", maxBody: "1KiB", extra: ", max_connections: 10")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("input.http.limits.max_connections") }, "\(log().suffix(2000))")
        #expect(try await post("third-secret") == "200")
        #expect(try await post("new-secret") == "401")
        func metrics() async throws -> String {
            try await run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(ferry.adminPort)/metrics"]).output
        }
        // Counted after the reload's log lines: waited for, not assumed.
        #expect(try await eventuallyAsync(timeout: .seconds(30)) {
            try await metrics().contains(#"ferry_config_reloads_total{result="restart_needed"} 1"#)
        })
        #expect(try await metrics().contains(#"ferry_config_reloads_total{result="applied"} 1"#))
    }

    @Test func sighupAppliesNewSyslogLimitsToNewConnections() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-syslog-reload")
        defer { dir.remove() }
        let out = dir.appending("out")
        let tcp = freePort()
        let config = dir.appending("ferry.yaml")
        func configure(maxMessage: String) throws {
            try """
                input:
                  syslog:
                    tcp: 127.0.0.1:\(tcp)
                    max_message_size: \(maxMessage)
                output:
                  file: { path: \(out) }
                """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try configure(maxMessage: "64KiB")
        let ferry = FerryProcess(name: "syslog", dir: dir, extra: ["--config", config])
        defer { ferry.terminate() }
        try await ferry.start()
        let pid = try #require(ferry.child?.pid)
        func log() -> String { (try? String(contentsOfFile: ferry.log, encoding: .utf8)) ?? "" }
        func send(_ text: String) async throws {
            try await runLogger(["-T", "--rfc5424", "--size", "8192", "-n", "127.0.0.1", "-P", String(tcp), "-t", "reload", text])
        }
        func stored() throws -> Set<String> { Set(try outputEvents(out).compactMap(message)) }
        let long = "long-" + String(repeating: "x", count: 2000)
        try await send(long)
        #expect(try await eventually(timeout: .seconds(30)) { try stored().contains(long) }, "a 2 KB message within 64 KiB is stored")

        try configure(maxMessage: "1KiB")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("reload: input settings applied") }, "\(log().suffix(2000))")
        try await send("long-again-" + String(repeating: "y", count: 2000))
        try await send("short-after-reload")
        #expect(try await eventually(timeout: .seconds(30)) { try stored().contains("short-after-reload") })
        #expect(try !stored().contains { $0.hasPrefix("long-again-") }, "over the new limit: refused")
        #expect(try await eventuallyAsync(timeout: .seconds(30)) {
            try await run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(ferry.adminPort)/metrics"]).output.split(separator: "\n").contains {
                $0.hasPrefix("ferry_input_syslog_frames_refused_total") && $0.contains(#"reason="too_large""#) && $0.hasSuffix(" 1")
            }
        }, "the refused frame is counted")
    }
}
