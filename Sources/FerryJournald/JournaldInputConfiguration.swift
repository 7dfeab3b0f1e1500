/// The settings of one journald input (`input.journald`), validated once at start by `validate()`.
package struct JournaldInputConfiguration: Sendable, Hashable {
    /// Where reading starts when no position is stored for the input.
    package enum StartAt: String, Sendable, Hashable, CaseIterable {
        /// The oldest entry the journal still has.
        case beginning
        /// Only entries written from now on (the default): a host's journal can be gigabytes, and a first
        /// start should not flood the queue and the outputs with the host's history. The last entry's cursor is
        /// stored at once, so entries written while Ferry is stopped after its first start are not missed.
        case end
    }

    /// Which journal to read.
    package enum Source: Sendable, Hashable {
        /// This machine's journal: `/run/log/journal` and `/var/log/journal`, system and user files, not
        /// journals of other machines kept under `remote/` (sd-journal's `SD_JOURNAL_LOCAL_ONLY`). Followed
        /// across rotation.
        case system
        /// Every journal file in a directory (and its machine-id subdirectories), followed across rotation.
        case directory(String)
        /// These journal files exactly (tests, benchmarks, `journalctl --file`); appends to them are followed,
        /// new files are not.
        case files([String])
    }

    package var source: Source
    /// Units whose entries are read (`_SYSTEMD_UNIT=`); a name without a unit type suffix gets `.service`,
    /// as `journalctl -u` does. No patterns.
    package var units: [String]
    /// Syslog identifiers whose entries are read (`SYSLOG_IDENTIFIER=`, `journalctl -t`).
    package var identifiers: [String]
    /// Raw matches `FIELD=value`, combined as journalctl combines them: values of one field ORed, different
    /// fields ANDed. See `JournalFilter` for how they combine with `units` and `identifiers`.
    package var matches: [String]
    package var startAt: StartAt
    /// At most this many entries go to the queue in one append (one transaction, one fsync). Default 4096.
    package var maxEntriesPerAppend: Int
    /// At most about this many bytes of events go to the queue in one append (an entry is never split).
    /// Default 4 MiB.
    package var maxBytesPerAppend: Int

    package init(source: Source = .system, units: [String] = [], identifiers: [String] = [], matches: [String] = [],
                 startAt: StartAt = .end, maxEntriesPerAppend: Int = 4096, maxBytesPerAppend: Int = 4 << 20) {
        self.source = source
        self.units = units
        self.identifiers = identifiers
        self.matches = matches
        self.startAt = startAt
        self.maxEntriesPerAppend = maxEntriesPerAppend
        self.maxBytesPerAppend = maxBytesPerAppend
    }

    /// Checks every setting; the error names the offending value and says what would be accepted.
    package func validate() throws(JournaldError) {
        _ = try JournalFilter.steps(units: units, identifiers: identifiers, matches: matches)
        switch source {
        case .system: break
        case .directory(let path):
            guard !path.isEmpty else { throw JournaldError(.invalidConfiguration, "the journal directory is empty; name a directory or leave it out to read the system journal") }
        case .files(let paths):
            guard !paths.isEmpty, !paths.contains(where: \.isEmpty) else {
                throw JournaldError(.invalidConfiguration, "the list of journal files is empty or has an empty path; name each file")
            }
        }
        guard maxEntriesPerAppend > 0 else {
            throw JournaldError(.invalidConfiguration, "entries per append is \(maxEntriesPerAppend); it must be at least 1")
        }
        guard maxBytesPerAppend > 0 else {
            throw JournaldError(.invalidConfiguration, "bytes per append is \(maxBytesPerAppend); it must be at least 1")
        }
    }
}
