import ArgumentParser
import FerryFile
import FerryQueue
import FerryWire
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

// MARK: files

struct Files: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The files the file input follows: position, size and lag (bytes not yet stored), from the queue's positions table.",
        discussion: "Reads the queue without a lock, so it works while the agent runs. A file whose path now holds another file (rotated) or nothing is shown with its last known size.")
    @OptionGroup var queue: QueueOptions
    @Option(help: "Print again every SECONDS until interrupted (live view).") var watch: Double?
    @Flag(help: "One JSON object per file, one per line.") var json = false

    func run() throws {
        let q = try queue.openReadOnly()
        defer { q.close() }
        while true {
            let rows = try Self.rows(q)
            if json {
                for row in rows { print(row.json) }
            } else {
                print(Self.table(rows))
            }
            guard let watch else { return }
            fflush(nil)
            pause(seconds: max(0.1, watch))  // the refresh interval the user asked for
            if !json { print("") }
        }
    }

    struct Row {
        let input: String
        let state: FileState
        /// The size of the file now, when its path still holds it; nil otherwise.
        let sizeNow: Int64?

        var lag: Int64 { max(0, (sizeNow ?? state.size) - state.position.offset) }
        var status: String { state.gone ? "gone" : sizeNow == nil ? "moved" : "followed" }

        var json: String {
            #"{"input":\#(JSONString.literal(input)),"path":\#(JSONString.literal(state.path)),"name":\#(JSONString.literal(state.name)),"device":\#(state.id.device),"inode":\#(state.id.inode),"# +
                #""offset":\#(state.position.offset),"skipping":\#(state.position.skipping),"size":\#(sizeNow ?? state.size),"lag":\#(lag),"# +
                #""status":"\#(status)","last_seen_ms":\#(state.lastSeen)}"#
        }
    }

    static func rows(_ q: Queue) throws -> [Row] {
        let positions: [InputPosition]
        do {
            positions = try q.positions(withPrefix: Array("file/".utf8))
        } catch {
            throw fail(error.message)
        }
        var rows: [Row] = []
        for position in positions {
            guard let value = position.value else { continue }
            let key = String(decoding: position.key, as: UTF8.self)
            let parts = key.split(separator: "/")
            guard parts.count >= 4, let state = try? FileState(decoding: value, key: key) else {
                stderr("ferry-tools: position \(key) cannot be read (damaged, or written by a newer Ferry)\n")
                continue
            }
            var info = stat()
            let same = stat(state.path, &info) == 0 && UInt64(info.st_dev) == state.id.device && UInt64(info.st_ino) == state.id.inode
            rows.append(Row(input: String(parts[1]), state: state, sizeNow: same ? Int64(info.st_size) : nil))
        }
        return rows.sorted { ($0.input, $0.state.path) < ($1.input, $1.state.path) }
    }

    static func table(_ rows: [Row]) -> String {
        if rows.isEmpty { return "no file positions in this queue" }
        var lines = ["INPUT    STATUS    OFFSET        SIZE          LAG           LAST SEEN                 PATH"]
        for row in rows {
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
            let offset = "\(row.state.position.offset)" + (row.state.position.skipping ? "+skip" : "")
            lines.append(pad(row.input, 9) + pad(row.status, 10) + pad(offset, 14) + pad("\(row.sizeNow ?? row.state.size)", 14)
                         + pad(humanBytes(UInt64(row.lag)), 14) + pad(isoTime(row.state.lastSeen), 26) + row.state.path)
        }
        return lines.joined(separator: "\n")
    }
}
