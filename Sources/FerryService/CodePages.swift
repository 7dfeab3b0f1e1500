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
/// Guarantees: only pages that are never written are released: the executable's loadable ELF segments
/// without write permission, less its RELRO range (relocated before it was made read-only), and nothing
/// when the executable has text relocations; and of those only the mappings that `/proc/self/smaps` shows
/// with no private page, in memory or swapped (`Anonymous:` and `Swap:` both 0). While a debugger is
/// attached (`TracerPid`), nothing is released, so its breakpoints stay. Left: a uprobe placed in the
/// instant between the read of smaps and `madvise` would be dropped. Any failure (no `/proc`, a refused
/// `madvise`) leaves the pages mapped and is reported as 0 bytes released. Linux only; elsewhere it does
/// nothing.
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
        guard !isTraced(), let segments = releasableSegments, let smaps = readSmaps(),
              let executable = executablePath() else { return 0 }
        var released = 0
        for mapping in releasable(smaps: smaps, executable: executable) {
            for segment in segments {
                let start = max(mapping.start, segment.lowerBound), end = min(mapping.end, segment.upperBound)
                guard start < end else { continue }
                let length = Int(end - start)
                // MADV_COLD (Linux 5.4) only moves the pages to the inactive list; an older kernel refuses it.
                _ = madvise(UnsafeMutableRawPointer(bitPattern: start), length, MADV_COLD)
                if madvise(UnsafeMutableRawPointer(bitPattern: start), length, MADV_DONTNEED) == 0 {
                    released += mapping.resident * length / Int(mapping.end - mapping.start)
                }
            }
        }
        return released
        #else
        return 0
        #endif
    }

    /// The mappings of `executable` in `smaps` (the text of `/proc/PID/smaps`) that are not writable,
    /// have resident pages and no private page (`Anonymous:` and `Swap:` present and 0).
    package static func releasable(smaps: String, executable: String) -> [Mapping] {
        var found: [Mapping] = []
        var current: Mapping?
        var anonymous: Int?
        var swapped: Int?
        func finish() {
            if let mapping = current, anonymous == 0, swapped == 0, mapping.resident > 0 { found.append(mapping) }
            current = nil
        }
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if let dash = first.firstIndex(of: "-"), !first.hasSuffix(":") {
                // "start-end perms offset dev inode [path]": a new mapping.
                finish()
                anonymous = nil
                swapped = nil
                guard fields.count >= 6, let start = UInt(first[..<dash], radix: 16),
                      let end = UInt(first[first.index(after: dash)...], radix: 16) else { continue }
                let permissions = fields[1]
                let path = fields[5...].joined(separator: " ")
                guard permissions.count >= 2, permissions.dropFirst().first == "-", path == executable else { continue }
                current = Mapping(start: start, end: end, resident: 0)
            } else if current != nil, fields.count >= 2, let kib = Int(fields[1]) {
                if first == "Rss:" { current?.resident = kib * 1024 }
                if first == "Anonymous:" { anonymous = kib }
                if first == "Swap:" { swapped = kib }
            }
        }
        finish()
        return found
    }

    /// ELF program header types and flags, and dynamic tags (`<elf.h>`, which Swift's Glibc does not export).
    private enum ELF {
        static let load: UInt32 = 1, dynamic: UInt32 = 2, programHeaders: UInt32 = 6, relro: UInt32 = 0x6474_E552
        static let writable: UInt32 = 2
        static let textRelocations: Int64 = 22, flags: Int64 = 30, textRelocationsFlag: UInt64 = 4
    }

    /// `neverWrittenSegments()`, read once: the program headers do not change while the process runs.
    private static let releasableSegments = neverWrittenSegments()

    /// The page ranges of the running executable that are never written: its `PT_LOAD` segments without
    /// `PF_W`, rounded inwards to pages, less `PT_GNU_RELRO` rounded outwards. Nil when it cannot tell
    /// (no program headers found) or when the executable has text relocations.
    package static func neverWrittenSegments() -> [Range<UInt>]? {
        #if os(Linux)
        guard let auxv = readAuxiliaryVector(), let headers = auxv[3], let entrySize = auxv[4], let count = auxv[5],
              entrySize >= 56, let base = UnsafeRawPointer(bitPattern: UInt(headers)) else { return nil }
        struct Header { var type: UInt32; var flags: UInt32; var address: UInt; var size: UInt }
        let all = (0..<Int(count)).map { index -> Header in
            let header = base + index * Int(entrySize)
            return Header(type: header.loadUnaligned(as: UInt32.self), flags: header.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
                          address: UInt(header.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                          size: UInt(header.loadUnaligned(fromByteOffset: 40, as: UInt64.self)))
        }
        // The load bias: where the program headers are against where the file says they are (0 if not PIE).
        let bias = all.first { $0.type == ELF.programHeaders }.map { UInt(headers) &- $0.address } ?? 0
        if let dynamic = all.first(where: { $0.type == ELF.dynamic }), let entries = UnsafeRawPointer(bitPattern: bias &+ dynamic.address) {
            var offset = 0
            while offset + 16 <= Int(dynamic.size) {
                let tag = entries.loadUnaligned(fromByteOffset: offset, as: Int64.self)
                let value = entries.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                if tag == 0 { break }
                if tag == ELF.textRelocations || (tag == ELF.flags && value & ELF.textRelocationsFlag != 0) { return nil }
                offset += 16
            }
        }
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let down = { (address: UInt) in address & ~(page - 1) }
        let up = { (address: UInt) in (address + page - 1) & ~(page - 1) }
        let relro = all.filter { $0.type == ELF.relro }.map { down(bias &+ $0.address)..<up(bias &+ $0.address &+ $0.size) }
        var segments: [Range<UInt>] = []
        for header in all where header.type == ELF.load && header.flags & ELF.writable == 0 {
            let start = up(bias &+ header.address), end = down(bias &+ header.address &+ header.size)
            guard start < end else { continue }
            var pieces = [start..<end]
            for written in relro {
                pieces = pieces.flatMap { piece -> [Range<UInt>] in
                    guard piece.overlaps(written) else { return [piece] }
                    return [piece.lowerBound..<max(piece.lowerBound, written.lowerBound),
                            min(piece.upperBound, written.upperBound)..<piece.upperBound].filter { !$0.isEmpty }
                }
            }
            segments += pieces
        }
        return segments
        #else
        return nil
        #endif
    }

    #if os(Linux)
    /// The text of `/proc/self/smaps`.
    package static func readSmaps() -> String? {
        readText("/proc/self/smaps")
    }

    private static func readText(_ path: String) -> String? {
        (try? readWholeFile(path)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `/proc/self/auxv`: type → value.
    private static func readAuxiliaryVector() -> [UInt64: UInt64]? {
        guard let bytes = try? readWholeFile("/proc/self/auxv"), bytes.count >= 16 else { return nil }
        var vector: [UInt64: UInt64] = [:]
        bytes.withUnsafeBytes { words in
            for offset in stride(from: 0, through: words.count - 16, by: 16) {
                let type = words.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                if type != 0 { vector[type] = words.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self) }
            }
        }
        return vector
    }

    /// Whether a debugger (or any tracer) is attached: its breakpoints are private pages of the code.
    private static func isTraced() -> Bool {
        guard let status = readText("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("TracerPid:") }) else { return false }
        return Int(line.dropFirst("TracerPid:".count).filter { !$0.isWhitespace }) != 0
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
