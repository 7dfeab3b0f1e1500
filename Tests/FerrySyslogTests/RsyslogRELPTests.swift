@testable import FerrySyslog
import FerryTestSupport
import Foundation
import MetricsTestKit
import Synchronization
import Testing

/// rsyslog's `omrelp` (Debian's `rsyslog` and `rsyslog-relp`) as the client of the RELP server, run as a child
/// with its own configuration, never as the system's syslog. rsyslog conflicts with syslog-ng in Debian and
/// would become the machine's syslog daemon if installed, so, like `tools/bench/compare`, the tests use the
/// packages unpacked with `dpkg-deb -x` (compare's cache, or `FERRY_RSYSLOG_ROOT`), or an installed rsyslog.
/// Skipped when neither is there; `tools/bench/compare --systems rsyslog` fills the cache.
@Suite(.timeLimit(.minutes(3)), .enabled(if: Rsyslog.find() != nil, "rsyslog with omrelp not found (see the suite's comment)"))
struct RsyslogRELPTests {
    @Test func omrelpDeliversEveryMessageAndClosesCleanly() async throws {
        let rsyslog = try #require(Rsyslog.find())
        let store = MemoryStore()
        let metrics = TestMetrics()
        let server = try await RELPServer.bind(configuration: RELPServerConfiguration(name: "rsyslog", address: ListenAddress(host: "127.0.0.1", port: 0)),
                                               store: store.store, logger: quietLogger, metricsFactory: metrics)
        let work = try TemporaryDirectory(prefix: "ferry-rsyslog")
        defer { work.remove() }
        let inPort = freePort()
        let configuration = """
            global(workDirectory="\(work.path)")
            module(load="imtcp")
            module(load="omrelp")
            input(type="imtcp" address="127.0.0.1" port="\(inPort)" ruleset="fwd")
            ruleset(name="fwd") {
                action(type="omrelp" target="127.0.0.1" port="\(server.address!.port!)" windowSize="1024"
                       template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1")
            }
            """
        try configuration.write(toFile: work.appending("rsyslog.conf"), atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: rsyslog.binary, arguments: ["-n", "-f", work.appending("rsyslog.conf"), "-i", work.appending("pid")]
                                     + (rsyslog.modules.map { ["-M", $0] } ?? []), stderrPath: work.appending("rsyslog.log"))
        let exited = Mutex(false)
        defer { if !exited.withLock({ $0 }) { child.kill(SIGKILL) } }
        #expect(try await eventually { connectLoopback(port: inPort).map { close($0); return true } ?? false })

        let lines = (0..<2000).map { "relayed \($0)" }
        try await runLogger(["-n", "127.0.0.1", "-P", String(inPort), "-T", "--rfc5424", "--octet-count", "-t", "relay", "--msgid", "R1"],
                            input: lines.joined(separator: "\n") + "\n")
        #expect(try await eventually { store.events.count == 2000 })
        let events = try store.events.map { try fields($0) }
        #expect(events.map { $0["message"] as? String } == lines)
        #expect(events.allSatisfy { $0["appname"] as? String == "relay" && $0["msgid"] as? String == "R1" && $0["@timestamp"] != nil })
        #expect(store.batchSizes.count < 2000)

        // SIGTERM: omrelp closes its session; the server answers, hints serverclose and closes.
        let status = try await onThread { child.kill(SIGTERM) }  // sends the signal and waits for the exit
        exited.withLock { $0 = true }
        #expect(status == 0)
        #expect(try await eventually {
            (try? metrics.expectMeter("ferry_input_relp_connections", [("input", "rsyslog")]).lastValue) == 0
        })
        #expect(metrics.counterTotal(label: "ferry_input_relp_frames_refused_total", dimensions: [("input", "rsyslog"), ("reason", "invalid_frame")]) == 0)
        await server.shutdown()
    }
}

/// Where rsyslogd and its modules are: `FERRY_RSYSLOG_ROOT` or tools/bench/compare's cache (unpacked
/// packages), or the installed package.
struct Rsyslog {
    let binary: String
    /// The module directory to pass with `-M`, for unpacked packages.
    let modules: String?

    static func find() -> Rsyslog? {
        let cache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")
        let roots = [ProcessInfo.processInfo.environment["FERRY_RSYSLOG_ROOT"], cache + "/ferry-bench-compare/rsyslog/root"].compactMap { $0 }
        for root in roots {
            let modules = root + "/usr/lib/x86_64-linux-gnu/rsyslog"
            if FileManager.default.fileExists(atPath: root + "/usr/sbin/rsyslogd"), FileManager.default.fileExists(atPath: modules + "/omrelp.so") {
                return Rsyslog(binary: root + "/usr/sbin/rsyslogd", modules: modules)
            }
        }
        if FileManager.default.fileExists(atPath: "/usr/sbin/rsyslogd"), FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so") {
            return Rsyslog(binary: "/usr/sbin/rsyslogd", modules: nil)
        }
        return nil
    }
}
