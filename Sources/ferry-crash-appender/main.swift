// Child process of the crash-safety test. Appends batches from many concurrent tasks and prints
// `ACK <batch-id> <events>` for each batch only after `append` returned, i.e. after its commit was fsynced.
// The test SIGKILLs this process at random moments and checks that every printed batch is stored, whole,
// exactly once. It stops by itself after `seconds` so that a lost test never leaves it running.
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 5, let tasks = Int(arguments[3]), let seconds = Double(arguments[4]) else {
    FileHandle.standardError.write("usage: ferry-crash-appender DATA_DIR PREFIX TASKS SECONDS\n".data(using: .utf8)!)
    exit(2)
}
let dataDir = arguments[1]
let prefix = arguments[2]

func emit(_ line: String) {
    // One write(2) per line: lines under PIPE_BUF never interleave, and nothing is buffered in this process.
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

let queue: Queue
do {
    var logger = Logger(label: "ferry-crash-appender")
    logger.logLevel = .warning
    queue = try Queue.open(at: dataDir, logger: logger)
} catch {
    FileHandle.standardError.write("ferry-crash-appender: \(error)\n".data(using: .utf8)!)
    exit(1)
}
emit("OPEN")

let deadline = ContinuousClock.now + .seconds(seconds)
await withTaskGroup(of: Void.self) { group in
    for task in 0..<tasks {
        group.addTask {
            let generator = EventGenerator(prefix: "\(prefix)-t\(task)")
            var rng = SystemRandomNumberGenerator()
            var batch = 0
            while ContinuousClock.now < deadline {
                // Mostly small batches; now and then one that spans several records (small record size),
                // to prove that a multi-record append is all-or-nothing.
                let multi = Int.random(in: 0..<10, using: &rng) == 0
                let count = multi ? Int.random(in: 50...200, using: &rng) : Int.random(in: 1...20, using: &rng)
                let events = generator.batch(batch, count: count, maxRecordBytes: multi ? 4096 : RecordBuilder.defaultMaxRecordBytes)
                do {
                    _ = try await queue.append(events)
                    emit("ACK \(generator.prefix)-b\(batch) \(count)")
                } catch {
                    emit("ERR \(generator.prefix)-b\(batch) \(error)")
                }
                batch += 1
            }
        }
    }
}
queue.close()
emit("DONE")
