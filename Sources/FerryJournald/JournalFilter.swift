/// The journald input's filters as the sd-journal match calls that select them: pure, so the combination is
/// tested exactly.
///
/// sd-journal matches are AND of OR of AND of (values of one field ORed). Ferry builds
/// `(unit ∈ units OR identifier ∈ identifiers) AND (matches)`:
/// - `units` (`_SYSTEMD_UNIT=`) and `identifiers` (`SYSLOG_IDENTIFIER=`) are ORed with each other: both name
///   sources to read, and "sshd's logs and the kernel's" is what a list of both means. (`journalctl -u … -t …`
///   ANDs them instead, which selects nothing in the common case that a unit's identifier is not listed.)
/// - `matches` narrow the selection, combined as journalctl combines its `FIELD=value` arguments: values of
///   one field ORed, different fields ANDed (sd-journal does this itself within one term).
/// - No filter at all reads every entry.
package enum JournalFilter {
    package enum Step: Hashable, Sendable {
        /// `sd_journal_add_match` with `FIELD=value`.
        case match(String)
        /// `sd_journal_add_disjunction`: OR between the terms before and after.
        case disjunction
        /// `sd_journal_add_conjunction`: AND between the terms before and after (one level above OR).
        case conjunction
    }

    /// The match calls for these filters, in order; throws when a value cannot be a match.
    package static func steps(units: [String], identifiers: [String], matches: [String]) throws(JournaldError) -> [Step] {
        var steps: [Step] = []
        for unit in units {
            steps.append(.match("_SYSTEMD_UNIT=" + (try unitName(unit))))
        }
        if !identifiers.isEmpty && !units.isEmpty { steps.append(.disjunction) }
        for identifier in identifiers {
            guard !identifier.isEmpty else {
                throw JournaldError(.invalidConfiguration, "an identifier is empty; name the SYSLOG_IDENTIFIER to read, e.g. sshd or kernel")
            }
            steps.append(.match("SYSLOG_IDENTIFIER=" + identifier))
        }
        if !steps.isEmpty && !matches.isEmpty { steps.append(.conjunction) }
        for match in matches {
            try checkMatch(match)
            steps.append(.match(match))
        }
        return steps
    }

    /// Unit type suffixes (systemd.unit(5)); a name without one is a service.
    static let unitTypes = ["service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope"]

    /// `name` as journald stores it in `_SYSTEMD_UNIT`: `sshd` becomes `sshd.service`, as `journalctl -u` does.
    static func unitName(_ name: String) throws(JournaldError) -> String {
        guard !name.isEmpty else {
            throw JournaldError(.invalidConfiguration, "a unit name is empty; name the unit to read, e.g. sshd.service")
        }
        guard !name.contains(where: { "*?[".contains($0) }) else {
            throw JournaldError(.invalidConfiguration, "unit '\(name)' is a pattern; patterns are not supported, list each unit")
        }
        guard !name.contains(where: { $0 == "/" || $0.isWhitespace }) else {
            throw JournaldError(.invalidConfiguration, "'\(name)' is not a unit name; name a unit such as sshd.service")
        }
        if let dot = name.lastIndex(of: "."), unitTypes.contains(String(name[name.index(after: dot)...])) { return name }
        return name + ".service"
    }

    /// A raw match must be `FIELD=value` with a journal field name: `A-Z`, `0-9` and `_`, not starting with a
    /// digit, at most 64 bytes (journald's rule); trusted fields (`_PID`) may be matched.
    static func checkMatch(_ match: String) throws(JournaldError) {
        let bytes = Array(match.utf8)
        guard let equals = bytes.firstIndex(of: UInt8(ascii: "=")), equals > 0 else {
            throw JournaldError(.invalidConfiguration, "match '\(match)' is not FIELD=value; write e.g. _TRANSPORT=kernel")
        }
        let name = bytes[..<equals]
        let valid = name.count <= 64 && !(name.first! >= 0x30 && name.first! <= 0x39)
            && name.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") }
        guard valid else {
            throw JournaldError(.invalidConfiguration,
                                "match '\(match)': '\(String(decoding: name, as: UTF8.self))' is not a journal field name (A-Z, 0-9 and _, not starting with a digit, at most 64 characters)")
        }
    }
}
