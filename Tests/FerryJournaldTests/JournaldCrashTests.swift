#if canImport(Glibc)
import Glibc
#endif
@testable import FerryJournald
import FerryQueue
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// Exactly once from journal to queue, whatever kills the process: a child (`ferry-journald-follower`, the input
/// on the seam as the agent runs it) follows a journal directory that a writer appends to (systemd-journal-remote,
/// as journald would); the child is SIGKILLed again and again after random numbers of commits and restarted;
/// after every kill no entry is stored twice, and at the end every entry written is stored exactly once.
@Suite(.timeLimit(.minutes(5))) struct JournaldCrashTests {
    @Test(.tags(.long)) func everyEntryIsStoredExactlyOnceAcrossSigkillsWhileTheJournalGrows() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-journald-crash")
        defer { dir.remove() }
        let executable = builtProductsDirectory() + "/ferry-journald-follower"
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-journald-follower first (swift build)")
        let journal = dir.appending("journal")
        let data = dir.appending("queue")
        try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: true)
        // A first entry, so that the directory holds a journal when the first child opens it.
        try await JournalFiles.write([TestEntry.message(entryText(0), at: 0)], to: journal + "/system.journal")
        let arguments = [data, journal, "120"]

        let total = 3000
        let finished = Atomic<Bool>(false)
        let writer = Task {
            // Chunks of 60 entries, each one run of systemd-journal-remote appending to the same file.
            var next = 1
            while next < total {
                let chunk = (next..<min(total, next + 60)).map { TestEntry.message(entryText($0), at: $0) }
                try await JournalFiles.write(chunk, to: journal + "/system.journal")
                next += chunk.count
            }
            finished.store(true, ordering: .releasing)
        }
        var rng = SystemRandomNumberGenerator()
        var round = 0
        var stored = 0
        var killsWhileWriting = 0
        while round < 10 || (!finished.load(ordering: .acquiring) && round < 60) {
            let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: dir.appending("child.err"))
            let target = Int.random(in: 1...6, using: &rng)
            let reached = try await child.waitForLines(timeout: .seconds(30)) { lines in
                lines.lazy.filter { $0.hasPrefix("APPENDED ") }.count >= target
                    || (lines.contains("STARTED") && finished.load(ordering: .acquiring) && stored + appended(lines) == total)
            }
            if !finished.load(ordering: .acquiring) { killsWhileWriting += 1 }
            child.kill(SIGKILL)  // and reaped
            try #require(reached, "round \(round): the child made no progress: \(child.lines.suffix(3))")
            stored = try checkedOnce(data, round: round)
            round += 1
        }
        try await writer.value

        // A last start reads what is left; then the queue holds every entry once.
        let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: dir.appending("child.err"))
        let done = try await child.waitForLines(timeout: .seconds(60)) { stored + appended($0) >= total }
        child.kill(SIGKILL)
        #expect(done, "the last start stored \(appended(child.lines)) of the \(total - stored) entries left")
        let queue = try Queue.open(at: data, logger: RecordingLogHandler.Store().logger())
        defer { queue.close() }
        let messages = try storedMessages(queue)
        #expect(messages.count == total)
        #expect(messages == (0..<total).map(entryText), "every entry once, in the journal's order")
        #expect(round >= 10 && killsWhileWriting > 0)
        print("journald input SIGKILL: \(round) kills (\(killsWhileWriting) while the journal grew), \(messages.count) of \(total) entries stored, each once")
    }
}

/// Entries the child reports as committed.
private func appended(_ lines: [String]) -> Int {
    lines.reduce(0) { sum, line in line.hasPrefix("APPENDED ") ? sum + (Int(line.dropFirst(9)) ?? 0) : sum }
}

/// The `message` of every event in `queue`, in order.
private func storedMessages(_ queue: Queue) throws -> [String] {
    try storedEvents(queue).map { try parse(Array($0.utf8))["message"] as? String ?? "<none>" }
}

/// Opens the queue the child left, checks that no entry is stored twice, returns how many are stored.
private func checkedOnce(_ data: String, round: Int) throws -> Int {
    guard FileManager.default.fileExists(atPath: data) else { return 0 }
    let queue = try Queue.open(at: data, logger: RecordingLogHandler.Store().logger())
    defer { queue.close() }
    let messages = try storedMessages(queue)
    var seen = Set<String>()
    let twice = messages.filter { !seen.insert($0).inserted }
    #expect(twice.isEmpty, "after kill \(round), stored twice: \(twice.prefix(5))")
    return messages.count
}

private func entryText(_ i: Int) -> String { "entry \(i)" }

extension Tag {
    /// Tests that take tens of seconds (child processes killed and restarted).
    @Tag static var long: Self
}
