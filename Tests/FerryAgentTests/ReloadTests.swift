@testable import FerryAgent
import FerryForward
import FerryPipeline
import Logging
import Synchronization
import Testing

@Suite struct ReloadTests {
    @Test func changedKeysNameEverySectionThatNeedsARestartButNotTheLogLevel() {
        let running = AgentConfiguration.embeddedDefault()
        var fresh = running
        fresh.logging.level = "debug"
        #expect(Agent.changedKeys(running: running, fresh: fresh).isEmpty)
        fresh.queue.maxBytes *= 2
        fresh.dataDirectory = "/elsewhere"
        fresh.admin = nil
        fresh.logging.format = fresh.logging.format == .json ? .logfmt : .json
        #expect(Agent.changedKeys(running: running, fresh: fresh) == ["queue.path", "queue", "admin", "logging.format"])
    }

    @Test func aReloadAppliesTheLevelAndAnInvalidFileKeepsTheRunningConfiguration() {
        let level = LogLevelSetting(.warning)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let running = AgentConfiguration.embeddedDefault()
        var next = running
        next.logging.level = "debug"
        let file = next
        let good = Agent.reloadConfiguration(running: running, Agent.Reload(logLevel: level) { file }, logger: logger)
        #expect(good.result == "applied")
        #expect(good.now.logging.level == "debug")
        #expect(level.level == .debug)

        let bad = Agent.reloadConfiguration(running: good.now, Agent.Reload(logLevel: level) { () throws(ConfigurationError) in
            throw ConfigurationError("line 1: not YAML")
        }, logger: logger)
        #expect(bad.result == "invalid")
        #expect(bad.now == good.now)
        #expect(level.level == .debug)
    }

    @Test func anOutputsOwnSettingsAreAppliedLiveItsLagPolicyNeedsARestart() {
        struct Unusable: Error {}
        let level = LogLevelSetting(.warning)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let running = AgentConfiguration.embeddedDefault()
        var moved = running
        moved.output = .file(FileOutputConfiguration(path: "/elsewhere", maxFiles: 3))
        let file = moved
        var replaced: [OutputConfiguration] = []
        let applied = Agent.reloadConfiguration(running: running, Agent.Reload(logLevel: level) { file }, logger: logger) { replaced.append($0) }
        #expect(applied.result == "applied")
        #expect(replaced.map(\.kind) == [moved.output])
        #expect(applied.now == moved)

        // Settings the output cannot be built with: refused, the running ones stay.
        let refused = Agent.reloadConfiguration(running: running, Agent.Reload(logLevel: level) { file }, logger: logger) { _ in throw Unusable() }
        #expect(refused.result == "invalid")
        #expect(refused.now.output == running.output)

        // A lag policy belongs to the queue's consumer: a restart applies it.
        var lagging = running
        lagging.outputs[0].consumer.whenLagging = .block
        let laggingFile = lagging
        replaced = []
        let later = Agent.reloadConfiguration(running: running, Agent.Reload(logLevel: level) { laggingFile }, logger: logger) { replaced.append($0) }
        #expect(later.result == "restart_needed")
        #expect(replaced.isEmpty)
    }

    @Test func handlersFollowTheSharedLevelUnlessGivenAnotherOne() {
        let shared = LogLevelSetting(.info)
        var follower = LineLogHandler(label: "a", format: .logfmt, level: shared, limiter: RepeatLimiter())
        var pinned = LineLogHandler(label: "b", format: .logfmt, level: shared, limiter: RepeatLimiter())
        follower.logLevel = .info  // what Logger.child does: the parent's level, the shared one
        pinned.logLevel = .error
        shared.level = .debug
        #expect(follower.logLevel == .debug)
        #expect(pinned.logLevel == .error)
    }
}
