/// One message of systemd's notify protocol (`sd_notify(3)`): newline-separated `KEY=VALUE`
/// assignments in one datagram. Pure: encoding only, no I/O.
package enum ServiceNotification: Sendable, Hashable {
    /// `READY=1`: start-up is complete (for Ferry: the queue is open and every input listens).
    /// Also ends a reload that `reloading` announced.
    case ready(status: String?)
    /// `RELOADING=1` with `MONOTONIC_USEC=`: a reload has begun; `ready` ends it. systemd ≥ 253 needs
    /// the timestamp for `Type=notify-reload`; older ones ignore it.
    case reloading(monotonicMicroseconds: UInt64, status: String?)
    /// `STOPPING=1`: shutdown has begun.
    case stopping(status: String?)
    /// `STATUS=`: one line shown by `systemctl status`.
    case status(String)
    /// `WATCHDOG=1`: the keep-alive ping.
    case watchdog(status: String?)

    /// `READY=1`, `RELOADING=1` and `STOPPING=1` are said once; a ping or a status is followed by newer ones.
    package var isOneShot: Bool {
        switch self {
        case .ready, .reloading, .stopping: true
        case .status, .watchdog: false
        }
    }

    /// The datagram's text. A status is one line: line breaks become spaces, because a newline would
    /// start a new assignment that systemd would read as a key.
    package var encoded: String {
        var fields: [String]
        let status: String?
        switch self {
        case .ready(let text):
            fields = ["READY=1"]
            status = text
        case .reloading(let microseconds, let text):
            fields = ["RELOADING=1", "MONOTONIC_USEC=\(microseconds)"]
            status = text
        case .stopping(let text):
            fields = ["STOPPING=1"]
            status = text
        case .status(let text):
            fields = []
            status = text
        case .watchdog(let text):
            fields = ["WATCHDOG=1"]
            status = text
        }
        if let status {
            fields.append("STATUS=" + Self.oneLine(status))
        }
        return fields.joined(separator: "\n")
    }

    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
