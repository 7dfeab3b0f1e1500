// Child process of the crash-safety tests. Appends batches from many concurrent tasks and prints
// `ACK <batch-id> <events> <first-sequence> <last-sequence>` for each batch only after `append` returned,
// i.e. after its commit was fsynced. The test SIGKILLs this process at random moments and checks that every
// printed batch is stored, whole, exactly once. It stops by itself after `seconds` so that a lost test never
// leaves it running.
//
// With CONSUMERS (a number), the queue has that many consumers (c0, c1, ...), and each consumer's task
// leases and settles records at random while the appenders run: it prints `LEASED <c> <seq>...` for what it
// was handed, `SETTLING <c> <seq>...` before an acknowledgement or burial and `SETTLED <c> <seq>...` after
// it returned (committed). The test checks that no consumer is handed a record it settled, and that every
// consumer gets every acknowledged record.
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 5 || arguments.count == 6, let tasks = Int(arguments[3]), let seconds = Double(arguments[4]) else {
    FileHandle.standardError.write("usage: ferry-crash-appender DATA_DIR PREFIX TASKS SECONDS [CONSUMERS]\n".data(using: .utf8)!)
    exit(2)
}
let consumerCount = arguments.count == 6 ? Int(arguments[5]) ?? 0 : 0
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
    var configuration = QueueConfiguration()
    if consumerCount > 0 {
        configuration.consumers = (0..<consumerCount).map { ConsumerSettings(name: "c\($0)") }
    }
    queue = try Queue.open(at: dataDir, configuration: configuration, logger: logger)
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
                    let receipt = try await queue.append(events)
                    emit("ACK \(generator.prefix)-b\(batch) \(count) \(receipt.firstSequence ?? 0) \(receipt.lastSequence ?? 0)")
                } catch {
                    emit("ERR \(generator.prefix)-b\(batch) \(error)")
                }
                batch += 1
            }
        }
    }
    for name in (0..<consumerCount).map({ "c\($0)" }) {
        group.addTask {
            guard let consumer = try? queue.consumer(named: name) else { emit("ERR \(name) no such consumer"); return }
            var rng = SystemRandomNumberGenerator()
            while ContinuousClock.now < deadline {
                guard let lease = try? consumer.lease(maxRecords: Int.random(in: 1...64, using: &rng)), !lease.isEmpty else {
                    await consumer.waitForAppend(timeout: .milliseconds(50))
                    continue
                }
                let sequences = lease.sequences
                emit("LEASED \(name) " + sequences.map(String.init).joined(separator: " "))
                // Settle a random part (out of order: the rest is released and comes back first).
                let settle = sequences.filter { _ in Int.random(in: 0..<4, using: &rng) != 0 }
                consumer.release(sequences.filter { !settle.contains($0) })
                guard !settle.isEmpty else { continue }
                emit("SETTLING \(name) " + settle.map(String.init).joined(separator: " "))
                do {
                    if Int.random(in: 0..<10, using: &rng) == 0 {
                        try await consumer.moveToDead(settle, reason: "refused by the test")
                    } else {
                        try await consumer.acknowledge(settle)
                    }
                    emit("SETTLED \(name) " + settle.map(String.init).joined(separator: " "))
                } catch {
                    emit("ERR \(name) settle \(error)")
                }
            }
        }
    }
}
queue.close()
emit("DONE")
