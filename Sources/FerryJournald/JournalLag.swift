/// How far a journald input is behind the journal: the entries after its stored cursor (`ferry-tools journal`).
package enum JournalLag {
    /// What the journal says about a stored cursor.
    package enum Answer: Hashable, Sendable {
        /// The cursor's entry is there; `entries` entries (passing the configuration's filters) follow it.
        case behind(entries: Int)
        /// The journal no longer has the cursor's entry: the input will read from the oldest entry, and
        /// `entries` entries (passing the filters) are there to read.
        case gap(entries: Int)
    }

    /// Opens the journal `configuration` names, finds `cursor` and counts the entries after it. Reads (and
    /// encodes) every entry after the cursor, so it costs as much as the input reading them. Throws when the
    /// journal cannot be opened (the message says what to do) or read.
    package static func measure(cursor: String, configuration: JournaldInputConfiguration) throws(JournaldError) -> Answer {
        let reader = try JournalReader(configuration: configuration)
        let start = try reader.start(storedCursor: cursor, startAt: .beginning)
        var entries = 0
        while true {
            let batch = try reader.read(maxEntries: 4096, maxBytes: 16 << 20)
            if let failure = batch.failure { throw failure }
            if batch.events.isEmpty { break }
            entries += batch.events.count
        }
        if case .gap = start { return .gap(entries: entries) }
        return .behind(entries: entries)
    }
}
