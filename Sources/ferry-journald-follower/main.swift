// Child process of the journald input's SIGKILL test: follows the journal in JOURNAL_DIR into the queue in
// DATA_DIR through the seam, exactly as the agent does, and prints `APPENDED <events>` after each commit (entries
// and cursor in one transaction). The test SIGKILLs it at random moments and checks that every entry written is
// stored exactly once. It stops by itself after SECONDS so that a lost test never leaves it running.
import FerryJournald
import FerryPipeline
import FerryQueue
import FerryWire
import Foundation
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 4, let seconds = Double(arguments[3]) else {
    FileHandle.standardError.write("usage: ferry-journald-follower DATA_DIR JOURNAL_DIR SECONDS\n".data(using: .utf8)!)
    exit(2)
}

func emit(_ line: String) {
    // One write(2) per line: nothing is buffered in this process when it is killed.
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

/// The seam's sink, printing what each commit stored.
struct PrintingSink: JournaldSink {
    let sink: JournaldIntakeSink
    func appendWaiting(_ events: JournalEvents, position: JournalPosition) async -> Bool {
        guard await sink.appendWaiting(events, position: position) else { return false }
        emit("APPENDED \(events.count)")
        return true
    }
}

var logger = Logger(label: "ferry-journald-follower")
logger.logLevel = .warning
let input: JournaldInput
let queue: Queue
do {
    queue = try Queue.open(at: arguments[1], logger: logger)
    let intake = Intake(input: "journald", queue: queue, stamp: StampSettings().stamp(host: "follower"), logger: logger)
    // Small appends: more commits, so that kills land between and inside them.
    let configuration = JournaldInputConfiguration(source: .directory(arguments[2]), startAt: .beginning, maxEntriesPerAppend: 37)
    let key = JournalPosition.key(input: "journald")
    let stored = try queue.positions(withPrefix: key).first { $0.key == key }?.value
    input = try JournaldInput(name: "journald", configuration: configuration, storedPosition: stored,
                              sink: PrintingSink(sink: JournaldIntakeSink(intake: intake)), logger: logger)
} catch {
    FileHandle.standardError.write("ferry-journald-follower: \(error)\n".data(using: .utf8)!)
    exit(1)
}

let running = Task { try await input.run() }
_ = await input.started()
emit("STARTED")
try? await Task.sleep(for: .seconds(seconds))
running.cancel()
_ = try? await running.value
queue.close()
