#if canImport(Glibc)
import Glibc
#endif
@testable import FerryFile
import FerryQueue
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// Exactly once from file to queue, whatever kills the process: a child (`ferry-file-follower`, the input on
/// the seam as the agent runs it) follows a log that a writer appends to and rotates (rename, with a glob that
/// matches the rotated files too); the child is SIGKILLed again and again at random moments and restarted;
/// after every kill no line is stored twice, and at the end every line written is stored exactly once.
@Suite(.timeLimit(.minutes(5))) struct FileCrashTests {
    @Test(.tags(.long)) func everyLineIsStoredExactlyOnceAcrossSigkillsWhileTheWriterAppendsAndRotates() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file-crash")
        defer { dir.remove() }
        let executable = builtProductsDirectory() + "/ferry-file-follower"
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-file-follower first (swift build)")
        let logs = dir.appending("logs")
        let data = dir.appending("queue")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let arguments = [data, logs + "/app.log*", "120"]

        let total = 8000
        let finished = Atomic<Bool>(false)
        let writer = Task {
            let written = await writeAndRotate(directory: logs, lines: total)
            finished.store(true, ordering: .releasing)
            return written
        }
        var rng = SystemRandomNumberGenerator()
        var round = 0
        var stored = 0
        var killsWhileWriting = 0
        // Kills while the writer writes (and at least ten of them), each after a random number of commits.
        while round < 10 || (!finished.load(ordering: .acquiring) && round < 60) {
            let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: dir.appending("child.err"))
            let target = Int.random(in: 1...6, using: &rng)
            let reached = try await child.waitForLines(timeout: .seconds(30)) { lines in
                lines.lazy.filter { $0.hasPrefix("APPENDED ") }.count >= target || (lines.contains("STARTED") && stored + appended(lines) == total)
            }
            if !finished.load(ordering: .acquiring) { killsWhileWriting += 1 }
            child.kill(SIGKILL)  // and reaped
            try #require(reached, "round \(round): the child made no progress: \(child.lines.suffix(3))")
            stored = try checkedOnce(data, round: round)
            round += 1
        }
        let written = await writer.value
        try #require(written == total)

        // A last start reads what is left; then the queue holds every line once.
        let child = try ChildProcess(executable: executable, arguments: arguments, stderrPath: dir.appending("child.err"))
        let done = try await child.waitForLines(timeout: .seconds(60)) { stored + appended($0) >= total }
        child.kill(SIGKILL)
        #expect(done, "the last start stored \(appended(child.lines)) of the \(total - stored) lines left")
        let queue = try Queue.open(at: data, logger: RecordingLogHandler.Store().logger())
        defer { queue.close() }
        let messages = try storedMessages(queue)
        #expect(messages.count == total)
        let expected = (0..<total).map(lineText)
        #expect(Set(messages) == Set(expected), "missing: \(Set(expected).subtracting(messages).sorted().prefix(5))")
        #expect(round >= 10 && killsWhileWriting > 0)
        print("file input SIGKILL: \(round) kills (\(killsWhileWriting) while the writer wrote and rotated), \(messages.count) of \(total) lines stored, each once")
    }
}

/// Events the child reports as committed.
private func appended(_ lines: [String]) -> Int {
    lines.reduce(0) { sum, line in line.hasPrefix("APPENDED ") ? sum + (Int(line.dropFirst(9)) ?? 0) : sum }
}

/// Opens the queue the child left, checks that no line is stored twice, returns how many are stored.
private func checkedOnce(_ data: String, round: Int) throws -> Int {
    let queue = try Queue.open(at: data, logger: RecordingLogHandler.Store().logger())
    defer { queue.close() }
    let messages = try storedMessages(queue)
    var seen = Set<String>()
    let twice = messages.filter { !seen.insert($0).inserted }
    #expect(twice.isEmpty, "after kill \(round), stored twice: \(twice.prefix(5))")
    #expect(queue.stats.events == UInt64(messages.count))
    return messages.count
}

/// Line `i` as written, about 100 bytes.
private func lineText(_ i: Int) -> String {
    let number = String(i)
    return "line-" + String(repeating: "0", count: max(0, 6 - number.count)) + number + " " + String(repeating: "x", count: 90)
}

/// Writes `lines` lines to `directory/app.log` as a logging program does, rotating every 700 lines the way
/// logrotate's `create` does: rename to `app.log.<n>`, a few more lines through the old descriptor, then a new
/// `app.log`. Paced so that the child's kills fall in the middle. Returns the lines written.
private func writeAndRotate(directory: String, lines: Int) async -> Int {
    let path = directory + "/app.log"
    var descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    var rotations = 0
    var pendingRotation = -1
    for i in 0..<lines {
        let bytes = Array((lineText(i) + "\n").utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        precondition(n == bytes.count, "write: errno \(errno)")
        if i > 0 && i % 700 == 0 {
            rotations += 1
            precondition(Glibc.rename(path, "\(path).\(rotations)") == 0)
            pendingRotation = i + 5
        }
        if i == pendingRotation {
            close(descriptor)
            descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if i % 20 == 0 { try? await Task.sleep(for: .milliseconds(20)) }  // pacing of the writer, not a wait for a condition
    }
    close(descriptor)
    return lines
}
