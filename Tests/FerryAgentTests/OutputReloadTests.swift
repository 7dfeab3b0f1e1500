import FerryTestSupport
import Foundation
import Testing

/// Issue 17: SIGHUP applies an output's new settings without a restart of Ferry: the output alone is
/// restarted with them, and nothing acknowledged is lost or sent twice on the way.
@Suite(.serialized, .tags(.long), .timeLimit(.minutes(3))) struct OutputReloadTests {
    @Test func sighupMovesAnHttpOutputToNewHostsAndAnUnusableSettingKeepsTheOldOnes() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-output-reload")
        defer { dir.remove() }
        let (outA, outB) = (dir.appending("out-a"), dir.appending("out-b"))
        let a = FerryProcess(name: "a", dir: dir, extra: ["--output-file", outA])
        let b = FerryProcess(name: "b", dir: dir, extra: ["--output-file", outB])
        defer { a.terminate(); b.terminate() }
        try await a.start()
        try await b.start()

        let config = dir.appending("edge.yaml")
        func configure(_ output: String) throws {
            try "output:\n  http:\n\(output)\n".write(toFile: config, atomically: true, encoding: .utf8)
        }
        try configure("    hosts: [\"127.0.0.1:\(a.ingestPort)\"]")
        let edge = FerryProcess(name: "edge", dir: dir, extra: ["--config", config])
        defer { edge.terminate() }
        try await edge.start()
        let pid = try #require(edge.child?.pid)
        func log() -> String { (try? String(contentsOfFile: dir.appending("edge.log"), encoding: .utf8)) ?? "" }

        let first = (0..<200).map { "r1-\($0)" }
        #expect(try await post(first, to: edge.url))
        #expect(try await eventually(timeout: .seconds(30)) { Set(try deliveredIDs(outA).keys).isSuperset(of: first) })

        // New hosts: the output restarts with them; what follows goes to b.
        try configure("    hosts: [\"127.0.0.1:\(b.ingestPort)\"]")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("output restarted with its new settings") }, "\(log().suffix(2000))")
        let second = (0..<200).map { "r2-\($0)" }
        #expect(try await post(second, to: edge.url))
        #expect(try await eventually(timeout: .seconds(30)) { Set(try deliveredIDs(outB).keys).isSuperset(of: second) })

        // Settings that cannot work (a CA file that is not there): refused, the output keeps b.
        try configure("    hosts: [\"127.0.0.1:\(a.ingestPort)\"]\n    tls: { certificate_authorities: [\(dir.appending("missing-ca.pem"))] }")
        kill(pid, SIGHUP)
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("reload refused for an output") }, "\(log().suffix(2000))")
        let third = (0..<200).map { "r3-\($0)" }
        #expect(try await post(third, to: edge.url))
        #expect(try await eventually(timeout: .seconds(30)) { Set(try deliveredIDs(outB).keys).isSuperset(of: third) })

        let metrics = try await run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(edge.adminPort)/metrics"]).output
        #expect(metrics.contains(#"ferry_config_reloads_total{result="applied"} 1"#))
        #expect(metrics.contains(#"ferry_config_reloads_total{result="invalid"} 1"#))
        // Every event once, in the place it was sent to.
        let (inA, inB) = (try deliveredIDs(outA), try deliveredIDs(outB))
        #expect(Set(inA.keys) == Set(first), "a holds the first events only")
        #expect(Set(inB.keys) == Set(second + third), "b holds the rest")
        #expect(inA.values.allSatisfy { $0 == 1 } && inB.values.allSatisfy { $0 == 1 }, "none twice")
    }

    /// A certificate rotated in place (new files at the same paths, another CA) is served to new
    /// connections after SIGHUP, without a restart.
    @Test func sighupServesARotatedCertificateToNewConnections() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tls-reload")
        defer { dir.remove() }
        let (old, new) = (try await makeTestCertificates(), try await makeTestCertificates())
        defer { old.remove(); new.remove() }
        let (pem, key) = (dir.appending("live.pem"), dir.appending("live.key"))
        func install(_ certs: TemporaryDirectory) throws {
            for (from, to) in [("server.pem", pem), ("server.key", key)] {
                try? FileManager.default.removeItem(atPath: to)
                try FileManager.default.copyItem(atPath: certs.appending(from), toPath: to)
            }
        }
        try install(old)
        let config = dir.appending("ferry.yaml")
        try "input:\n  http:\n    tls: { certificate: \(pem), key: \(key) }\n".write(toFile: config, atomically: true, encoding: .utf8)
        let ferry = FerryProcess(name: "tls", dir: dir, extra: ["--config", config])
        defer { ferry.terminate() }
        try await ferry.start()
        let pid = try #require(ferry.child?.pid)
        func post(trusting certs: TemporaryDirectory) async throws -> String {
            try await run("/usr/bin/curl", ["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", certs.appending("ca.pem"),
                                            "-H", "Content-Type: application/x-ndjson", "--data-binary", #"{"a":1}"#,
                                            "https://localhost:\(ferry.ingestPort)/"]).output
        }
        #expect(try await post(trusting: old) == "200")
        #expect(try await post(trusting: new) != "200", "not yet the new certificate")

        try install(new)
        kill(pid, SIGHUP)
        let log = { (try? String(contentsOfFile: dir.appending("tls.log"), encoding: .utf8)) ?? "" }
        #expect(try await eventually(timeout: .seconds(30)) { log().contains("TLS certificates and keys read again") }, "\(log().suffix(2000))")
        #expect(try await post(trusting: new) == "200", "the rotated certificate, without a restart")
        #expect(try await post(trusting: old) != "200", "the old one is no longer served")
    }
}
