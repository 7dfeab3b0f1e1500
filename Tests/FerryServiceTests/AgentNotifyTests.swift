import FerryService
import FerryTestSupport
import Foundation
import Testing

/// A real `ferry run` with `NOTIFY_SOCKET` pointing at a datagram socket of the test's own, as systemd
/// starts it with `Type=notify` and `WatchdogSec=1s`. The output forwards to a port that this object
/// holds bound and never listens on (so no parallel test's server can take it): what the test posts
/// stays queued and shows in `STATUS=`.
final class NotifiedFerry {
    let directory: TemporaryDirectory
    let listener: NotifyListener
    let child: ChildProcess
    let ingestPort = freePort()
    let adminPort = freePort()
    let log: String
    /// Bound, not listening: connections to it are refused for as long as it is open.
    private let deadPort: Int32
    private var exited = false

    /// The configuration file given with `--config` (rewritten by reload tests).
    var configFile: String { directory.appending("ferry.yaml") }

    init(configuration: String = "logging:\n  level: info\n") throws {
        directory = try TemporaryDirectory(prefix: "ferry-agent-notify")
        listener = try NotifyListener(directory: directory.path)
        log = directory.appending("ferry.log")
        try Data(configuration.utf8).write(to: URL(fileURLWithPath: directory.appending("ferry.yaml")))
        let (fd, refusingPort) = try #require(bindLoopbackPort(), "cannot bind a loopback port")
        deadPort = fd
        var environment = ProcessInfo.processInfo.environment
        environment["WATCHDOG_PID"] = nil
        environment["NOTIFY_SOCKET"] = listener.name
        environment["WATCHDOG_USEC"] = "1000000"
        let executable = builtProductsDirectory() + "/ferry"
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry first (swift build)")
        child = try ChildProcess(executable: executable, arguments: [
            "run", "--config", directory.appending("ferry.yaml"), "--data-dir", directory.appending("data"), "--listen", "127.0.0.1:\(ingestPort)",
            "--admin", "127.0.0.1:\(adminPort)", "--forward", "127.0.0.1:\(refusingPort)",
        ], stderrPath: log, environment: environment)
    }

    /// The HTTP status of an admin path, as curl reports it ("000" when nothing answers).
    func admin(_ path: String) async throws -> String {
        try await run("/usr/bin/curl", ["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                        "http://127.0.0.1:\(adminPort)\(path)"]).output
    }

    /// Posts `count` events in one request; true on 200.
    func post(events count: Int) async throws -> Bool {
        let file = directory.appending("body.ndjson")
        let body = (0 ..< count).map { #"{"id":\#($0)}"# }.joined(separator: "\n") + "\n"
        try Data(body.utf8).write(to: URL(fileURLWithPath: file))
        let result = try await run("/usr/bin/curl", ["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                                                     "-H", "Content-Type: application/x-ndjson", "--data-binary", "@" + file,
                                                     "http://127.0.0.1:\(ingestPort)/"])
        return result.output == "200"
    }

    /// Writes `text` to the configuration file and sends SIGHUP; returns the datagrams up to the
    /// `READY=1` that ends the reload (nil if it did not come).
    func reload(_ text: String) async throws -> [String]? {
        try Data(text.utf8).write(to: URL(fileURLWithPath: configFile))
        kill(child.pid, SIGHUP)
        return try await listener.messages { $0 == "READY=1" }
    }

    /// The value of a sample of `/metrics`, as text ("" when absent).
    func metric(_ sample: String) async throws -> String {
        let text = try await run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(adminPort)/metrics"]).output
        let line = text.split(separator: "\n").first { $0.hasPrefix(sample + " ") }
        return line.map { String($0.dropFirst(sample.count + 1)) } ?? ""
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Still running (not exited, not reaped).
    var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(child.pid, &status, WNOHANG) == 0
    }

    /// SIGTERM, then the exit status once it exited (nil if it had to be killed).
    func terminate() async throws -> Int32? {
        exited = true
        return try await child.stop(SIGTERM, timeout: .seconds(40))
    }

    /// The exit status once it exited by itself (signal 0 sends nothing), nil if it had to be killed.
    func exitStatus() async throws -> Int32? {
        exited = true
        return try await child.stop(0, timeout: .seconds(40))
    }

    deinit {
        if !exited { child.kill() }
        close(deadPort)
        directory.remove()
    }
}

@Suite(.timeLimit(.minutes(4)))
struct AgentNotifyTests {
    @Test func ferrySendsReadyWhenReadyTurns200ThenDepthInStatusWatchdogPingsAndStoppingOnSigterm() async throws {
        let ferry = try NotifiedFerry()

        // The first datagram is READY=1, and by then /ready answers 200: READY is sent after the flag
        // that /ready reads is set, never before.
        let ready = try #require(try await ferry.listener.next(timeout: .seconds(30)), "no datagram; log:\n\(ferry.logText)")
        #expect(ready.hasPrefix("READY=1\n"))
        #expect(ready.contains("STATUS=running; queue 0 records, 0 events"))
        #expect(try await ferry.admin("/ready") == "200")

        #expect(try await ferry.post(events: 3))
        // Pings every 0.5 s (WatchdogSec=1s); the status rides the first ping after it changed.
        let untilDepth = try #require(try await ferry.listener.messages(timeout: .seconds(90)) { $0.contains("STATUS=running; queue 1 records, 3 events") },
                                      "no STATUS with the depth; log:\n\(ferry.logText)")
        #expect(untilDepth.allSatisfy { $0.hasPrefix("WATCHDOG=1") })
        #expect(untilDepth.last?.hasPrefix("WATCHDOG=1\nSTATUS=running; queue 1 records, 3 events, ") == true)
        // Unchanged status: bare pings.
        #expect(try await ferry.listener.next() == "WATCHDOG=1")

        kill(ferry.child.pid, SIGTERM)
        let untilStopping = try #require(try await ferry.listener.messages { $0.hasPrefix("STOPPING=1") },
                                         "no STOPPING=1; log:\n\(ferry.logText)")
        #expect(untilStopping.dropLast().allSatisfy { $0.hasPrefix("WATCHDOG=1") })
        #expect(try await ferry.exitStatus() == 0)
    }

    @Test func sighupAppliesTheLogLevelRefusesAnInvalidFileAndNamesChangesThatNeedARestart() async throws {
        // At warning, the notice "configuration reloaded" is logged only if the reload applied the new level.
        let ferry = try NotifiedFerry(configuration: "logging:\n  level: warning\n")
        let ready = try #require(try await ferry.listener.next(timeout: .seconds(30)), "no datagram; log:\n\(ferry.logText)")
        #expect(ready.hasPrefix("READY=1\n"))

        // Each reload is announced and ends with READY=1.
        let applied = try #require(try await ferry.reload("logging:\n  level: notice\n"), "no READY=1 after SIGHUP; log:\n\(ferry.logText)")
        #expect(applied.dropLast().last?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") == true)
        #expect(ferry.logText.contains("configuration reloaded"))
        #expect(try await ferry.metric(#"ferry_config_reloads_total{result="applied"}"#) == "1")

        // An invalid file keeps the running configuration.
        #expect(try await ferry.reload("logging: [\n") != nil)
        #expect(ferry.logText.contains("reload refused: the configuration is invalid"))
        #expect(try await ferry.metric(#"ferry_config_reloads_total{result="invalid"}"#) == "1")

        // A change that needs a restart is named and not applied; the level still is.
        #expect(try await ferry.reload("queue:\n  max_bytes: 2GiB\nlogging:\n  level: notice\n") != nil)
        #expect(ferry.logText.contains("need a restart"))
        #expect(ferry.logText.contains("ferry.config.keys=queue"))
        #expect(try await ferry.metric(#"ferry_config_reloads_total{result="restart_needed"}"#) == "1")

        #expect(ferry.isRunning)
        #expect(try await ferry.admin("/ready") == "200")
        #expect(try await ferry.post(events: 1))
        #expect(try await ferry.terminate() == 0)
    }
}
