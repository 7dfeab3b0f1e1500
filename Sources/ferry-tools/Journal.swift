import ArgumentParser
import FerryJournald
import FerryQueue
import FerryWire
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

// MARK: journal

struct JournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "The journald input's stored cursor and its lag in entries, from the queue's positions table and the journal.",
        discussion: """
            Reads the queue without a lock, so it works while the agent runs. The lag counts the entries after the \
            cursor that pass the filters given here (the input's own filters are in its configuration; give the same \
            --unit, --identifier and --match to count what the input will read). Counting reads every entry after \
            the cursor. Reading the system journal needs the systemd-journal group, as the agent does.
            """)
    @OptionGroup var queue: QueueOptions
    @Option(help: "The journal directory the input reads (input.journald.directory); default: the system journal.") var directory: String?
    @Option(name: .customLong("unit"), help: "A unit filter, as input.journald.units (repeatable).") var units: [String] = []
    @Option(name: .customLong("identifier"), help: "An identifier filter, as input.journald.identifiers (repeatable).") var identifiers: [String] = []
    @Option(name: .customLong("match"), help: "A FIELD=value match, as input.journald.matches (repeatable).") var matches: [String] = []
    @Flag(name: .customLong("no-lag"), help: "Only show the stored cursor; do not open the journal.") var noLag = false
    @Option(help: "Print again every SECONDS until interrupted (live view).") var watch: Double?
    @Flag(help: "One JSON object per input, one per line.") var json = false

    func run() throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        let configuration = JournaldInputConfiguration(source: directory.map { .directory($0) } ?? .system,
                                                       units: units, identifiers: identifiers, matches: matches)
        while true {
            let positions: [InputPosition]
            do {
                positions = try q.positions(withPrefix: Array("journald/".utf8))
            } catch {
                throw fail(error.message)
            }
            if positions.isEmpty && !json { print("no journald cursor in this queue") }
            for position in positions {
                guard let value = position.value else { continue }
                let input = String(decoding: position.key.dropFirst("journald/".utf8.count), as: UTF8.self)
                let cursor: String
                do {
                    cursor = try JournalPosition.cursor(from: value)
                } catch {
                    stderr("ferry-tools: the cursor of input \(input) cannot be read: \(error.message)\n")
                    continue
                }
                var lag = "not measured"
                var lagJSON = "null"
                var status = "stored"
                if !noLag {
                    do {
                        switch try JournalLag.measure(cursor: cursor, configuration: configuration) {
                        case .behind(let entries): (lag, lagJSON, status) = ("\(entries) entries", "\(entries)", "in journal")
                        case .gap(let entries):
                            (lag, lagJSON, status) = ("\(entries) entries", "\(entries)", "gone from journal (the input reads from the oldest entry)")
                        }
                    } catch {
                        lag = "unknown: \(error.message)"
                    }
                }
                if json {
                    print(#"{"input":\#(JSONString.literal(input)),"cursor":\#(JSONString.literal(cursor)),"status":\#(JSONString.literal(status)),"lag_entries":\#(lagJSON)}"#)
                } else {
                    print("input:  \(input)\ncursor: \(cursor)\nstatus: \(status)\nlag:    \(lag)")
                }
            }
            guard let watch else { return }
            fflush(nil)
            pause(seconds: max(0.1, watch))  // the refresh interval the user asked for
            if !json { print("") }
        }
    }
}
