import FerryTestSupport
import Foundation

/// One journal entry to write: its fields in order (a name may repeat), its timestamps and boot.
struct TestEntry {
    var fields: [(name: String, value: [UInt8])]
    var realtime: UInt64
    var monotonic: UInt64
    var bootID: String

    static let boot = "0123456789abcdef0123456789abcdef"

    init(_ fields: [(String, String)], realtime: UInt64, monotonic: UInt64? = nil, bootID: String = TestEntry.boot) {
        self.fields = fields.map { ($0.0, Array($0.1.utf8)) }
        self.realtime = realtime
        self.monotonic = monotonic ?? realtime % 1_000_000_000_000
        self.bootID = bootID
    }

    /// An entry with `MESSAGE=message` and `fields`, at `second` seconds after 2023-11-14T22:13:20Z.
    static func message(_ message: String, at second: Int, _ fields: [(String, String)] = [], bootID: String = TestEntry.boot) -> TestEntry {
        TestEntry([("MESSAGE", message)] + fields, realtime: 1_700_000_000_000_000 + UInt64(second) * 1_000_000, bootID: bootID)
    }

    /// The entry in journal export format (systemd's JOURNAL_EXPORT_FORMATS): `NAME=value` lines, and the
    /// binary form (name, newline, 64-bit little-endian length, bytes, newline) for a value that holds a
    /// newline or is not UTF-8.
    var exportFormat: [UInt8] {
        var out: [UInt8] = []
        out += Array("__REALTIME_TIMESTAMP=\(realtime)\n__MONOTONIC_TIMESTAMP=\(monotonic)\n_BOOT_ID=\(bootID)\n".utf8)
        for (name, value) in fields {
            if value.contains(0x0A) || String(validating: value, as: UTF8.self) == nil {
                out += Array(name.utf8) + [0x0A]
                withUnsafeBytes(of: UInt64(value.count).littleEndian) { out += $0 }
                out += value + [0x0A]
            } else {
                out += Array("\(name)=".utf8) + value + [0x0A]
            }
        }
        out.append(0x0A)
        return out
    }
}

/// Writes real journal files with systemd-journal-remote (Debian package `systemd-journal-remote`), which
/// turns export format on stdin into a journal file; run again on the same file, it appends.
enum JournalFiles {
    static let remote = "/lib/systemd/systemd-journal-remote"

    /// Appends `entries` to the journal file `path` (made if missing; the name must end in `.journal`).
    static func write(_ entries: [TestEntry], to path: String) async throws {
        let input = entries.reduce(into: [UInt8]()) { $0 += $1.exportFormat }
        let result = try await run(remote, ["--output=\(path)", "-"], input: Data(input))
        guard result.status == 0 else {
            throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "systemd-journal-remote failed (\(result.status)): \(result.errors)"])
        }
    }

    /// What `journalctl -o json` prints for the journal in `directory`: one object per entry.
    static func journalctl(directory: String, _ extra: [String] = []) async throws -> [[String: Any]] {
        let result = try await run("/bin/journalctl", ["--directory=\(directory)", "-o", "json", "--no-pager"] + extra)
        guard result.status == 0 else {
            throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "journalctl failed (\(result.status)): \(result.errors)"])
        }
        return try result.output.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}

/// An event as a dictionary (tests only: production code never parses events).
func parse(_ event: some Collection<UInt8>) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(event)) as! [String: Any]
}
