#if canImport(Glibc)
import Glibc
#endif

/// Lets go of the executable's code pages that are mapped but not in use.
///
/// Much of Ferry's code runs once or rarely: start-up (configuration, TLS contexts), and the Swift
/// runtime's protocol-conformance scans, which read a descriptor in every module the first time a type is
/// checked against a protocol (the first request of a kind maps ~9 MiB of the static binary that way).
/// The kernel also maps the neighbours of each page it faults in (fault-around, 64 KiB). So a static
/// binary carries 15–20 MiB of mapped code of which the idle agent runs a few hundred KiB.
///
/// `release()` tells the kernel, for the executable's mappings that are not writable and hold no private
/// (copy-on-write) page, that these pages are cold (`MADV_COLD`: first in line for reclaim) and drops them
/// from Ferry's page tables (`MADV_DONTNEED`). Nothing is freed at once: the pages stay in the page
/// cache, a later fault maps them again without I/O, and the kernel may reclaim them under pressure
/// (mapped executable pages it would keep). The agent calls it once start-up is over and then every
/// `CodePages.interval`, so its resident set is the code it ran lately.
///
/// Guarantees: only mappings of the executable's own file that are neither writable nor hold an anonymous
/// page are touched, so no data can be lost (RELRO, which was written before it was made read-only,
/// holds anonymous pages and is skipped); any failure (no `/proc`, a refused `madvise`) leaves the pages
/// mapped and is reported as 0 bytes released. Linux only; elsewhere it does nothing.
package enum CodePages {
    /// How often the agent releases them again after start-up.
    package static let interval: Duration = .seconds(60)

    /// A mapping of `/proc/self/smaps` that may be released.
    package struct Mapping: Equatable, Sendable {
        package var start: UInt
        package var end: UInt
        /// Resident bytes when it was read.
        package var resident: Int

        package init(start: UInt, end: UInt, resident: Int) {
            self.start = start
            self.end = end
            self.resident = resident
        }
    }

    /// Releases the pages; returns the resident bytes of the mappings released (as read just before).
    @discardableResult
    package static func release() -> Int {
        #if os(Linux)
        guard let smaps = readSmaps(), let executable = executablePath() else { return 0 }
        var released = 0
        for mapping in releasable(smaps: smaps, executable: executable) {
            let length = Int(mapping.end - mapping.start)
            // MADV_COLD (Linux 5.4) only moves the pages to the inactive list; an older kernel refuses it.
            _ = madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_COLD)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_DONTNEED) == 0 {
                released += mapping.resident
            }
        }
        return released
        #else
        return 0
        #endif
    }

    /// The mappings of `executable` in `smaps` (the text of `/proc/PID/smaps`) that are not writable,
    /// have resident pages and no anonymous page.
    package static func releasable(smaps: String, executable: String) -> [Mapping] {
        var found: [Mapping] = []
        var current: Mapping?
        var anonymous = 0
        func finish() {
            if let mapping = current, anonymous == 0, mapping.resident > 0 { found.append(mapping) }
            current = nil
        }
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if let dash = first.firstIndex(of: "-"), !first.hasSuffix(":") {
                // "start-end perms offset dev inode [path]": a new mapping.
                finish()
                anonymous = 0
                guard fields.count >= 6, let start = UInt(first[..<dash], radix: 16),
                      let end = UInt(first[first.index(after: dash)...], radix: 16) else { continue }
                let permissions = fields[1]
                let path = fields[5...].joined(separator: " ")
                guard permissions.count >= 2, permissions.dropFirst().first == "-", path == executable else { continue }
                current = Mapping(start: start, end: end, resident: 0)
            } else if current != nil, fields.count >= 2, let kib = Int(fields[1]) {
                if first == "Rss:" { current?.resident = kib * 1024 }
                if first == "Anonymous:" { anonymous = kib }
            }
        }
        finish()
        return found
    }

    #if os(Linux)
    /// The text of `/proc/self/smaps`.
    package static func readSmaps() -> String? {
        guard let file = fopen("/proc/self/smaps", "r") else { return nil }
        defer { fclose(file) }
        var text = ""
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) >= 0, let line {
            text += String(cString: line)
        }
        return text
    }

    /// The path of the running executable, as `/proc/self/smaps` names it.
    package static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    #endif
}
