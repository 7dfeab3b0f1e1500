import FerryService
import Testing

@Suite struct CodePagesTests {
    static let executable = "/usr/bin/ferry"

    /// Only the executable's mappings that are not writable, are resident and hold no private page, in
    /// memory or swapped; a mapping that does not say is not taken.
    @Test func choosesOnlyTheExecutablesCleanReadOnlyMappings() {
        let smaps = """
        55d0a0000000-55d0a0200000 r--p 00000000 fe:00 42                         /usr/bin/ferry
        Size:               2048 kB
        Rss:                 512 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        55d0a0200000-55d0a1200000 r-xp 00200000 fe:00 42                         /usr/bin/ferry
        Size:              16384 kB
        Rss:               15080 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        VmFlags: rd ex mr mw me
        55d0a1200000-55d0a1300000 r--p 01200000 fe:00 42                         /usr/bin/ferry
        Rss:                 868 kB
        Anonymous:            20 kB
        Swap:                  0 kB
        55d0a1300000-55d0a1380000 r--p 01300000 fe:00 42                         /usr/bin/ferry
        Rss:                 100 kB
        Anonymous:             0 kB
        Swap:                 12 kB
        55d0a1380000-55d0a1400000 rw-p 01380000 fe:00 42                         /usr/bin/ferry
        Rss:                2060 kB
        Anonymous:           136 kB
        Swap:                  0 kB
        55d0a1400000-55d0a1500000 r-xp 01400000 fe:00 42                         /usr/bin/ferry
        Rss:                   0 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        55d0a1500000-55d0a1600000 r-xp 01500000 fe:00 42                         /usr/bin/ferry
        Rss:                  64 kB
        Anonymous:             0 kB
        7f0000000000-7f0000100000 r-xp 00000000 fe:00 7                          /usr/lib/x86_64-linux-gnu/libc.so.6
        Rss:                1600 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        7f0000200000-7f0000300000 rw-p 00000000 00:00 0
        Rss:                 100 kB
        Anonymous:           100 kB
        7f0000400000-7f0000500000 r--s 00000000 fe:00 9                          /var/lib/ferry/data.mdb
        Rss:                  64 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        """
        let found = CodePages.releasable(smaps: smaps, executable: Self.executable)
        #expect(found == [
            .init(start: 0x55d0_a000_0000, end: 0x55d0_a020_0000, resident: 512 * 1024),
            .init(start: 0x55d0_a020_0000, end: 0x55d0_a120_0000, resident: 15080 * 1024),
        ])
    }

    /// A path with spaces (or a replaced binary, "… (deleted)") is compared whole.
    @Test func comparesTheWholePath() {
        let smaps = """
        00400000-00500000 r-xp 00000000 fe:00 42                         /opt/my ferry/ferry (deleted)
        Rss:                 64 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        """
        #expect(CodePages.releasable(smaps: smaps, executable: "/opt/my ferry/ferry (deleted)").count == 1)
        #expect(CodePages.releasable(smaps: smaps, executable: "/opt/my ferry/ferry").isEmpty)
    }

    #if os(Linux)
    /// The ELF segments chosen in this process lie in the executable's read-only mappings, never in a
    /// writable one or in RELRO (a read-only mapping that holds written pages).
    @Test func neverWrittenSegmentsAreInsideTheExecutablesReadOnlyMappings() throws {
        let segments = try #require(CodePages.neverWrittenSegments())
        try #require(!segments.isEmpty)
        let executable = try #require(CodePages.executablePath())
        let smaps = try #require(CodePages.readSmaps())
        var mappings: [(range: Range<UInt>, writable: Bool, anonymous: Int)] = []
        var ours = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 5, !fields[0].hasSuffix(":"), let dash = fields[0].firstIndex(of: "-") {
                ours = fields.count >= 6 && fields[5...].joined(separator: " ") == executable
                guard ours, let start = UInt(fields[0][..<dash], radix: 16),
                      let end = UInt(fields[0][fields[0].index(after: dash)...], radix: 16) else { continue }
                mappings.append((start..<end, fields[1].dropFirst().first == "w", 0))
            } else if ours, fields.first == "Anonymous:", fields.count >= 2, let kib = Int(fields[1]) {
                mappings[mappings.count - 1].anonymous = kib
            }
        }
        for segment in segments {
            #expect(mappings.contains { !$0.writable && $0.range.lowerBound <= segment.lowerBound && segment.upperBound <= $0.range.upperBound },
                    "segment \(segment) is not inside one read-only mapping of \(executable)")
            // Not in a writable mapping, nor in RELRO: read-only now, with pages written at start.
            #expect(!mappings.contains { ($0.writable || $0.anonymous > 0) && $0.range.overlaps(segment) },
                    "segment \(segment) overlaps a mapping with written pages")
        }
        #expect(mappings.contains { !$0.writable && $0.anonymous > 0 }, "this PIE test binary has a RELRO mapping to stay out of")
    }

    /// In this very process: the executable's resident code shrinks, and the process goes on running it.
    @Test func releasesThisProcesssCodePagesAndKeepsRunning() throws {
        let executable = try #require(CodePages.executablePath())
        func resident() throws -> Int {
            let smaps = try #require(CodePages.readSmaps())
            return CodePages.releasable(smaps: smaps, executable: executable).reduce(0) { $0 + $1.resident }
        }
        let before = try resident()
        try #require(before > 1 << 20, "the test binary has more than 1 MiB of its code resident after start")
        let released = CodePages.release()
        let after = try resident()
        #expect(released >= before / 2)
        // Other tests run meanwhile and fault some code in again; not half of it within this instant.
        #expect(after < before / 2, "resident code of the executable: \(before) bytes before, \(after) after")
        #expect(try resident() > 0, "code that runs is mapped again")
    }
    #endif
}
