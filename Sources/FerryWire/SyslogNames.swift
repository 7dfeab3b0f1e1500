/// The names of syslog severities and facilities, shared by every input that stores them (the syslog and
/// RELP inputs' `facility`/`severity`, the journald input's `severity` from `PRIORITY`), so that a query
/// for `severity: "err"` finds both. They are the names of `syslog.h` and rsyslog, as Vector uses them.
public enum SyslogNames {
    /// Severity 0–7 (RFC 5424 §6.2.1): `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`, `debug`.
    public static let severities = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]

    /// Facility 0–23 (RFC 5424 §6.2.1).
    public static let facilities = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
        "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
        "local6", "local7",
    ]

    /// The name of severity `value`, nil outside 0–7.
    public static func severity(_ value: Int) -> String? {
        severities.indices.contains(value) ? severities[value] : nil
    }

    /// The name of facility `value`, nil outside 0–23.
    public static func facility(_ value: Int) -> String? {
        facilities.indices.contains(value) ? facilities[value] : nil
    }
}
