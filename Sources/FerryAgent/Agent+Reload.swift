import FerryIngest
package import FerryPipeline
import FerrySyslog
package import Logging
import Metrics

extension Agent {
    /// What SIGHUP (`systemctl reload`) needs: how to read the configuration again (the file and the
    /// command line's flags, as at the start) and the process-wide log level it may change.
    package struct Reload: Sendable {
        package let logLevel: LogLevelSetting
        package let read: @Sendable () throws(ConfigurationError) -> AgentConfiguration

        package init(logLevel: LogLevelSetting, read: @escaping @Sendable () throws(ConfigurationError) -> AgentConfiguration) {
            self.logLevel = logLevel
            self.read = read
        }
    }

    /// One reload: reads the configuration; an invalid one keeps the running configuration (`invalid`).
    /// Applies `logging.level`, the HTTP ingest's `auth` and limits and the syslog and RELP inputs' limits
    /// (`applyInput`: an input's new settings applied to it while it runs, or the keys that need a restart), the listeners' TLS certificates and keys read again from their files
    /// (`reloadListenerIdentities`: rotated in place, a failure keeps the old one, `invalid`), and an output's own settings (hosts, TLS certificates and keys, auth,
    /// limits, paths: the `http`, `file` or `kafka` block of an output that exists before and after)
    /// through `replaceOutput`, which restarts that output alone with them; an output that cannot be built
    /// with its new settings (a certificate that does not load) keeps running as it was (`invalid`). Any
    /// other change is refused with a log line naming its keys (`restart_needed`; the rest is still
    /// applied). Returns the outcome (the `result` label of `ferry_config_reloads_total`) and the
    /// configuration now in effect.
    static func reloadConfiguration(running: AgentConfiguration, _ reload: Reload, logger: Logger,
                                    replaceOutput: (OutputConfiguration) throws -> Void = { _ in },
                                    applyInput: (_ running: InputConfiguration, _ fresh: InputConfiguration) -> InputReload = { running, _ in
                                        InputReload(inEffect: running, restartKeys: ["input.\(running.name)"])
                                    },
                                    reloadListenerIdentities: () -> (reloaded: [String], failed: [(path: String, error: String)]) = { ([], []) })
        -> (result: String, now: AgentConfiguration) {
        let fresh: AgentConfiguration
        do {
            fresh = try reload.read()
        } catch {
            logger.error("reload refused: the configuration is invalid; the running configuration stays", metadata: ["error": "\(error.message)"])
            return ("invalid", running)
        }
        guard let level = Logger.Level(rawValue: fresh.logging.level) else {
            logger.error("reload refused: the configuration is invalid; the running configuration stays", metadata: [
                "error": "logging.level: \(fresh.logging.level) is not a level (trace debug info notice warning error critical)",
            ])
            return ("invalid", running)
        }
        reload.logLevel.level = level
        var now = running
        now.logging.level = fresh.logging.level
        var refused = false
        for (index, output) in running.outputs.enumerated() {
            guard let new = fresh.outputs.first(where: { $0.name == output.name }), new.consumer == output.consumer, new.kind != output.kind else { continue }
            do {
                try replaceOutput(new)
                now.outputs[index] = new
                logger.notice("reload: output restarted with its new settings", metadata: ["ferry.output": "\(output.name)"])
            } catch {
                refused = true
                logger.error("reload refused for an output: its new settings do not work; it keeps running as it was", metadata: [
                    "ferry.output": "\(output.name)", "error": "\(error)",
                ])
            }
        }
        // An input's settings that apply while it runs (the HTTP ingest's auth and limits, the syslog and RELP
        // limits) are applied even when others in its block need a restart; those are named. Its stamp is the
        // intake's, taken at the start.
        var inputKeys: [String: [String]] = [:]
        for (index, input) in running.inputs.enumerated() {
            guard let new = fresh.inputs.first(where: { $0.name == input.name }), new != input else { continue }
            var reloaded = applyInput(input, new)
            reloaded.inEffect.stamp = input.stamp
            if new.stamp != input.stamp { reloaded.restartKeys += ["input.\(input.name).fields", "input.\(input.name).add_timestamp"].filter { key in
                key.hasSuffix("fields") ? new.stamp.fields != input.stamp.fields : new.stamp.addTimestamp != input.stamp.addTimestamp
            } }
            if reloaded.inEffect != input {
                now.inputs[index] = reloaded.inEffect
                logger.notice("reload: input settings applied; requests from now on see them", metadata: ["ferry.input": "\(input.name)"])
            }
            if !reloaded.restartKeys.isEmpty { inputKeys["input.\(input.name)"] = reloaded.restartKeys }
        }
        // The listeners' certificates and keys, rotated in place (same paths): served from the next handshake.
        let identities = reloadListenerIdentities()
        if !identities.reloaded.isEmpty {
            logger.notice("reload: TLS certificates and keys read again; new connections get them", metadata: [
                "ferry.tls.listeners": "\(identities.reloaded.joined(separator: ","))",
            ])
        }
        for failure in identities.failed {
            refused = true
            logger.error("reload refused for a listener's TLS identity: it keeps the one it had; check the files", metadata: [
                "ferry.tls.listener": "\(failure.path)", "error": "\(failure.error)",
            ])
        }
        let keys = changedKeys(running: now, fresh: fresh).flatMap { inputKeys[$0] ?? [$0] }
        if !keys.isEmpty {
            logger.warning("reload: these changes need a restart and are not applied; restart Ferry to apply them", metadata: [
                "ferry.config.keys": "\(keys.joined(separator: ","))",
            ])
        }
        logger.notice("configuration reloaded", metadata: ["ferry.logging.level": "\(level)"])
        return (refused ? "invalid" : keys.isEmpty ? "applied" : "restart_needed", now)
    }

    /// What a reload did to one input: the configuration now in effect, and the keys that need a restart.
    struct InputReload: Equatable {
        var inEffect: InputConfiguration
        var restartKeys: [String]
    }

    /// The running inputs whose settings SIGHUP can change in place.
    struct LiveInputs: Sendable {
        let ingest: IngestServer?
        let syslog: SyslogServer?
        let relp: RELPServer?
    }

    /// Applies what of an input's new settings the running input can change in place (the HTTP ingest's
    /// `auth` and limits, the syslog and RELP limits); returns the configuration in effect and the keys of
    /// the rest, which need a restart (`input.<name>` for anything not named more precisely).
    static func applyInputSettings(running: InputConfiguration, fresh: InputConfiguration, servers: LiveInputs) -> InputReload {
        let path = "input.\(fresh.name)"
        var inEffect = running
        switch (running.source, fresh.source, servers.ingest, servers.syslog, servers.relp) {
        case (.http, .http(let new), let ingest?, _, _):
            let (settings, keys) = ingest.apply(new)
            inEffect.source = .http(settings)
            return InputReload(inEffect: inEffect, restartKeys: keys)
        case (.syslog(let old), .syslog(let new), _, let server?, _):
            let (limits, keys) = server.apply(new.limits, path: path)
            let (settings, othersChanged) = withLimits(limits, old: old, new: new)
            inEffect.source = .syslog(settings)
            return InputReload(inEffect: inEffect, restartKeys: keys + (othersChanged ? [path] : []))
        case (.relp(let old), .relp(let new), _, _, let server?):
            let (limits, keys) = server.apply(new.limits, path: path)
            let (settings, othersChanged) = withLimits(limits, old: old, new: new)
            inEffect.source = .relp(settings)
            return InputReload(inEffect: inEffect, restartKeys: keys + (othersChanged ? [path] : []))
        default:
            return InputReload(inEffect: running, restartKeys: [path])
        }
    }

    /// A syslog or RELP input's running settings with `limits` in effect, and whether `new` differs from
    /// `old` in anything but its limits (that needs a restart).
    private static func withLimits<Settings: Equatable & HasSyslogLimits>(_ limits: SyslogLimits, old: Settings, new: Settings)
        -> (inEffect: Settings, othersChanged: Bool) {
        var inEffect = old
        inEffect.limits = limits
        var rest = new
        rest.limits = old.limits
        return (inEffect, rest != old)
    }

    /// The keys (sections) that differ between `running` and `fresh`, other than `logging.level`.
    static func changedKeys(running: AgentConfiguration, fresh: AgentConfiguration) -> [String] {
        var keys: [String] = []
        let names = Set(running.inputs.map(\.name)).union(fresh.inputs.map(\.name)).sorted()
        for name in names where running.inputs.first(where: { $0.name == name }) != fresh.inputs.first(where: { $0.name == name }) {
            keys.append("input.\(name)")
        }
        if running.dataDirectory != fresh.dataDirectory { keys.append("queue.path") }
        if running.queue != fresh.queue { keys.append("queue") }
        let outputs = Set(running.outputs.map(\.name)).union(fresh.outputs.map(\.name)).sorted()
        for name in outputs where running.outputs.first(where: { $0.name == name }) != fresh.outputs.first(where: { $0.name == name }) {
            keys.append("outputs.\(name)")
        }
        if running.admin != fresh.admin || running.adminTLS != fresh.adminTLS || running.adminAllowPlaintext != fresh.adminAllowPlaintext
            || running.adminAuth != fresh.adminAuth { keys.append("admin") }
        if running.logging.format != fresh.logging.format { keys.append("logging.format") }
        return keys
    }

    /// Counts a reload in `ferry_config_reloads_total{result}`.
    static func countReload(_ result: String) {
        Counter(label: "ferry_config_reloads_total", dimensions: [("result", result)]).increment()
    }
}
