public import Foundation

/// rsyslogd from Debian's `rsyslog` and `rsyslog-relp`, run as a child with a configuration of its own, never
/// as the system's syslog. Installed, rsyslog would become the machine's syslog daemon (and it conflicts with
/// syslog-ng), so `tools/bootstrap` unpacks the packages with `dpkg-deb -x` into `~/.cache/ferry-rsyslog`;
/// `FERRY_RSYSLOG_ROOT` names another root; an installed rsyslog is used as a last resort.
public struct Rsyslog: Sendable {
    public let binary: String
    /// The module directory to pass with `-M`, for unpacked packages.
    public let modules: String?

    /// rsyslogd with `omrelp`, or nil when there is none.
    public static func find() -> Rsyslog? {
        let environment = ProcessInfo.processInfo.environment
        let cache = environment["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")
        let roots = [environment["FERRY_RSYSLOG_ROOT"], cache + "/ferry-rsyslog/root"].compactMap { $0 }
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

    /// Runs rsyslogd relaying what its `imtcp` port receives with `action` (`type="omrelp" ...`; RFC 5424
    /// format and endless retries are added), for the length of `body`, which gets the imtcp port and a
    /// function returning rsyslogd's log. Then stops it with SIGTERM: throws `RsyslogError` when it does not
    /// listen within 30 s or does not exit cleanly within 30 s of the SIGTERM (it is SIGKILLed then).
    public func relaying(action: String, _ body: (_ inPort: Int, _ log: @escaping @Sendable () -> String) async throws -> Void) async throws {
        let work = try TemporaryDirectory(prefix: "ferry-rsyslog")
        defer { work.remove() }
        let inPort = freePort()
        let configuration = """
            global(workDirectory="\(work.path)")
            module(load="imtcp")
            module(load="omrelp")
            input(type="imtcp" address="127.0.0.1" port="\(inPort)" ruleset="fwd")
            ruleset(name="fwd") {
                action(\(action)
                       template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1")
            }
            """
        try configuration.write(toFile: work.appending("rsyslog.conf"), atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: binary, arguments: ["-n", "-f", work.appending("rsyslog.conf"), "-i", work.appending("pid")]
                                     + (modules.map { ["-M", $0] } ?? []), stderrPath: work.appending("rsyslog.log"))
        var stopped = false
        defer { if !stopped { child.kill(SIGKILL) } }
        let logPath = work.appending("rsyslog.log")
        let log: @Sendable () -> String = { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        guard try await eventually(timeout: .seconds(30), { connectLoopback(port: inPort).map { close($0); return true } ?? false }) else {
            throw RsyslogError(description: "rsyslogd did not listen within 30 s; its log:\n\(log())")
        }
        try await body(inPort, log)
        let status = try await child.stop(SIGTERM, timeout: .seconds(30))
        stopped = true
        guard status == 0 else {
            throw RsyslogError(description: "rsyslogd did not exit cleanly on SIGTERM (status \(status.map(String.init) ?? "killed after 30 s")); its log:\n\(log())")
        }
    }
}

/// rsyslogd did not start or stop as expected; the description has its log.
public struct RsyslogError: Error, CustomStringConvertible {
    public let description: String
}
