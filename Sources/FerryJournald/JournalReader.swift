#if canImport(Glibc)
import Glibc
#endif

/// Reads a journal for the journald input: finds where to start, turns runs of entries into events with
/// the cursor of the last one, and waits for more.
///
/// Guarantees:
/// - Entries come in the journal's order (interleaved across files by sd-journal), each once, from the entry
///   after the stored cursor on.
/// - A stored cursor the journal no longer has (its file rotated away or vacuumed, or a different journal
///   altogether) is a gap: reading starts again at the oldest entry the journal has, and `start` says so, so
///   that the input logs and counts it. Never a silent skip; entries older than the lost one that another file
///   still holds are read again (duplicates, not loss).
/// - The same check runs whenever files are added or removed while following (`wait`), so a vacuum that
///   removes the file being read is a counted gap too.
/// - A journal from another boot is fine: the cursor carries the boot id, sd-journal orders by it.
///
/// One thread at a time (the input's journal thread) except `stop()`: sd-journal is not thread-safe. Entries
/// are turned into events on that thread too, off Swift's cooperative pool.
package final class JournalReader: @unchecked Sendable {
    /// Where `start` left the reader.
    package enum Start: Hashable, Sendable {
        /// At the stored cursor's entry: reading goes on after it.
        case resumed
        /// The stored cursor is not in the journal: reading starts at the oldest entry.
        case gap(storedCursor: String)
        /// No stored cursor, `start_at: beginning`: at the oldest entry.
        case beginning
        /// No stored cursor, `start_at: end`: after the last entry, whose cursor is given (to be stored at once,
        /// so that entries written while Ferry is stopped are not missed); nil when the journal is empty.
        case end(cursor: String?)
    }

    /// A run of entries read.
    package struct Batch: Sendable {
        package var events = JournalEvents()
        /// The cursor of the last entry of `events`; nil when `events` is empty.
        package var cursor: String?
        /// Binary values in `events` (written as base64).
        package var binaryValues = 0
        /// Entries of which sd-journal could not read every field (the fields it read are in the event).
        package var damagedEntries = 0
        /// Why the read stopped early: sd-journal failed to move to the next entry.
        package var failure: JournaldError?
    }

    /// What `wait()` saw.
    package enum Wake: Hashable, Sendable {
        /// `stop()` was called.
        case stopped
        /// The journal changed: read on.
        case changed
        /// Files were removed and the last entry read is gone with them: reading goes on from the oldest entry.
        case gap(lastCursor: String)
    }

    private let journal: Journal
    private let filters: [JournalFilter.Step]
    private var encoder = JournalEventEncoder()
    /// The cursor of the last entry read (or resumed at): checked again when files change.
    private var lastCursor: String?

    /// Opens the journal `configuration` names after checking that it can be read. `warn` receives a
    /// warning worth logging (some files unreadable, none there yet).
    package init(configuration: JournaldInputConfiguration, warn: (String) -> Void = { _ in }) throws(JournaldError) {
        try configuration.validate()
        filters = try JournalFilter.steps(units: configuration.units, identifiers: configuration.identifiers, matches: configuration.matches)
        let survey = JournalAccess.survey(configuration.source)
        switch JournalAccess.verdict(configuration.source, survey, uid: getuid()) {
        case .open: break
        case .openWithWarning(let warning): warn(warning)
        case .refuse(let error): throw error
        }
        journal = try Journal(source: configuration.source)
    }

    /// Positions the reader: after `storedCursor` when the journal still has it, else as `startAt` says.
    /// Matches are added only after the cursor was found: the stored entry need not pass filters changed
    /// since it was stored, and must still be recognised.
    package func start(storedCursor: String?, startAt: JournaldInputConfiguration.StartAt) throws(JournaldError) -> Start {
        let start: Start
        if let storedCursor {
            if try isPresent(storedCursor) {
                lastCursor = storedCursor
                start = .resumed
            } else {
                journal.seekHead()
                start = .gap(storedCursor: storedCursor)
            }
        } else {
            switch startAt {
            case .beginning:
                journal.seekHead()
                start = .beginning
            case .end:
                // seek_tail then previous lands on the last entry (sd_journal_next right after seek_tail
                // would return the last entry again in some versions).
                journal.seekTail()
                if journal.previous() {
                    let cursor = try journal.cursor()
                    lastCursor = cursor
                    start = .end(cursor: cursor)
                } else {
                    journal.seekHead()
                    start = .end(cursor: nil)
                }
            }
        }
        try journal.addMatches(filters)
        return start
    }

    /// Reads up to `maxEntries` entries or about `maxBytes` bytes of events, or until the journal has nothing
    /// more. Throws only when the last entry's cursor cannot be had (nothing of the batch may then be stored).
    package func read(maxEntries: Int, maxBytes: Int) throws(JournaldError) -> Batch {
        var batch = Batch()
        let binaryBefore = encoder.binaryValues
        while batch.events.count < maxEntries && batch.events.bytes.count < maxBytes {
            let moved: Bool
            do { moved = try journal.next() } catch {
                batch.failure = error
                break
            }
            guard moved else { break }
            encoder.reset()
            let complete = journal.forEachField { encoder.add(field: $0) }
            if !complete { batch.damagedEntries += 1 }
            let realtime = journal.realtime()
            batch.events.append { encoder.finish(realtime: realtime, into: &$0) }
        }
        batch.binaryValues = encoder.binaryValues - binaryBefore
        if !batch.events.isEmpty {
            // One cursor per batch: sd_journal_get_cursor formats and allocates a string.
            let cursor = try journal.cursor()
            batch.cursor = cursor
            lastCursor = cursor
        }
        return batch
    }

    /// Blocks until the journal changes or `stop()` is called. When files were added or removed, checks that
    /// the last entry read is still there; if it is gone, goes on from the oldest entry and says so.
    package func wait() throws(JournaldError) -> Wake {
        switch journal.wait() {
        case .stopped: return .stopped
        case .appended: return .changed
        case .invalidated:
            guard let last = lastCursor else { return .changed }
            journal.flushMatches()
            let present = try isPresent(last)
            if !present {
                journal.seekHead()
                lastCursor = nil
            }
            try journal.addMatches(filters)
            return present ? .changed : .gap(lastCursor: last)
        }
    }

    /// Makes the current and every later `wait()` return `.stopped`, promptly. Any thread.
    package func stop() { journal.stop() }

    /// Whether the journal (without matches) still has `cursor`'s entry; if so, the reader is on it.
    private func isPresent(_ cursor: String) throws(JournaldError) -> Bool {
        guard journal.seek(cursor: cursor) else { return false }  // unparsable: not ours to interpret
        guard try journal.next() else { return false }
        return journal.isAt(cursor: cursor)
    }
}
