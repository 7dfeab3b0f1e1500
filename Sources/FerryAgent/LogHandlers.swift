package import Logging
import FerryWire
import FoundationEssentials
import Synchronization
import FerryQueue

/// One line per message on stderr, as logfmt (`time=… level=… msg="…" key=value`) or JSON, with
/// repeats rate-limited: a message (label + text) logged more than `burst` times in `window` is
/// suppressed until the window ends, and the next one that passes carries `suppressed=N`. A down host
/// must not flood the log.
package struct LineLogHandler: LogHandler {
    package enum Format: Sendable { case logfmt, json }

    let label: String
    let format: Format
    let limiter: RepeatLimiter
    package var metadata: Logger.Metadata = [:]
    /// The process-wide level that a reload changes, when the handler follows one.
    let sharedLevel: LogLevelSetting?
    /// A level set on this logger that differs from the shared one; it then stays.
    private var pinnedLevel: Logger.Level?

    /// The shared level unless this logger was given another one (setting it to the shared level
    /// follows the shared level again: `Logger.child` copies its parent's level that way).
    package var logLevel: Logger.Level {
        get { pinnedLevel ?? sharedLevel?.level ?? .info }
        set { pinnedLevel = newValue == sharedLevel?.level ? nil : newValue }
    }

    package init(label: String, format: Format, level: Logger.Level, limiter: RepeatLimiter) {
        self.label = label
        self.format = format
        self.sharedLevel = nil
        self.pinnedLevel = level
        self.limiter = limiter
    }

    /// A handler whose level follows `level`, which a configuration reload changes for every logger.
    package init(label: String, format: Format, level: LogLevelSetting, limiter: RepeatLimiter) {
        self.label = label
        self.format = format
        self.sharedLevel = level
        self.pinnedLevel = nil
        self.limiter = limiter
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let message = "\(event.message)"
        guard let suppressed = limiter.admit(label + "\u{0}" + message) else { return }
        var fields = metadata.merging(event.metadata ?? [:]) { $1 }.map { ($0.key, "\($0.value)") }.sorted { $0.0 < $1.0 }
        if suppressed > 0 { fields.append(("suppressed", "\(suppressed)")) }
        let time = Timestamp.rfc3339(milliseconds: currentTimeMilliseconds())
        var line: String
        switch format {
        case .logfmt:
            line = "time=\(time) level=\(event.level) logger=\(label) msg=\(Self.logfmt(message))"
            for (key, value) in fields { line += " \(key)=\(Self.logfmt(value))" }
        case .json:
            line = "{\"time\":\"\(time)\",\"level\":\"\(event.level)\",\"logger\":\(JSONString.literal(label)),\"msg\":\(JSONString.literal(message))"
            for (key, value) in fields { line += ",\(JSONString.literal(key)):\(JSONString.literal(value))" }
            line += "}"
        }
        writeStandardError(line + "\n")
    }

    static func logfmt(_ value: String) -> String {
        if !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" || $0.isNewline }) { return value }
        // By Unicode scalar: "\r\n" is one Character, and a value from a peer must never start a log line.
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": quoted += "\\\\"
            case "\"": quoted += "\\\""
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }
}

/// Counts repeats of a message within a time window (shared by every logger of the process).
package final class RepeatLimiter: Sendable {
    let burst: Int
    let window: Duration
    private let state = Mutex<[String: (start: ContinuousClock.Instant, count: Int, suppressed: Int)]>([:])

    package init(burst: Int = 5, window: Duration = .seconds(10)) {
        self.burst = burst
        self.window = window
    }

    /// nil to drop this message; otherwise how many repeats were dropped before it.
    func admit(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        return state.withLock { state in
            if state.count > 10_000 { state = state.filter { now - $0.value.start < window } }
            guard var entry = state[key], now - entry.start < window else {
                let suppressed = state[key]?.suppressed ?? 0
                state[key] = (now, 1, 0)
                return suppressed
            }
            entry.count += 1
            if entry.count > burst {
                entry.suppressed += 1
                state[key] = entry
                return nil
            }
            state[key] = entry
            return 0
        }
    }
}

/// The log level of every `LineLogHandler` made with it: `logging.level`, changed by a reload (SIGHUP).
/// Lock-free; a change is seen by the next message logged on any thread.
package final class LogLevelSetting: Sendable {
    private let index: Atomic<Int>

    package init(_ level: Logger.Level) {
        index = Atomic(Logger.Level.allCases.firstIndex(of: level) ?? 2)
    }

    package var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
