// Child process of the file input's SIGKILL test: follows the files matching GLOB into the queue in DATA_DIR
// through the seam, exactly as the agent does, and prints `APPENDED <events>` after each commit (events and
// positions in one transaction). The test SIGKILLs it at random moments and checks that every line written
// is stored exactly once. It stops by itself after SECONDS so that a lost test never leaves it running.
import FerryFile
import FerryPipeline
import FerryQueue
import FerryWire
import Foundation
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 4, let seconds = Double(arguments[3]) else {
    FileHandle.standardError.write("usage: ferry-file-follower DATA_DIR GLOB SECONDS\n".data(using: .utf8)!)
    exit(2)
}

func emit(_ line: String) {
    // One write(2) per line: nothing is buffered in this process when it is killed.
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

/// The seam's sink, printing what each commit stored.
struct PrintingSink: FileEventSink {
    let sink: IntakeSink
    func appendWaiting(_ events: FileEvents, positions: [FilePositionUpdate]) async -> Bool {
        guard await sink.appendWaiting(events, positions: positions) else { return false }
        emit("APPENDED \(events.count)")
        return true
    }
}

var logger = Logger(label: "ferry-file-follower")
logger.logLevel = .warning
let input: FileInput
let queue: Queue
do {
    queue = try Queue.open(at: arguments[1], logger: logger)
    let intake = Intake(input: "file", queue: queue, stamp: StampSettings().stamp(host: "follower"), logger: logger)
    var configuration = FileInputConfiguration(paths: [arguments[2]])
    configuration.rescanInterval = .milliseconds(200)
    configuration.drainIdle = .milliseconds(500)
    // Small appends: more commits, so that kills land between and inside them.
    configuration.appendBytes = 4096
    let stored = try queue.positions(withPrefix: FileState.keyPrefix(input: "file")).compactMap { p in p.value.map { (p.key, $0) } }
    input = try FileInput(name: "file", configuration: configuration, storedPositions: stored,
                          sink: PrintingSink(sink: IntakeSink(intake: intake)), logger: logger)
} catch {
    FileHandle.standardError.write("ferry-file-follower: \(error)\n".data(using: .utf8)!)
    exit(1)
}

let running = Task { try await input.run() }
_ = await input.started()
emit("STARTED")
try? await Task.sleep(for: .seconds(seconds))
running.cancel()
_ = try? await running.value
queue.close()
