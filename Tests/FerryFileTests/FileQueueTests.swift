#if canImport(Glibc)
import Glibc
#endif
@testable import FerryFile
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Testing

/// The input through the seam into a real queue (LMDB on disk): events stamped, positions stored in the
/// transaction of the events, a full queue pausing reading, restarts resuming from the stored positions.
@Suite(.timeLimit(.minutes(3))) struct FileQueueTests {
    @Test func eventsCarryFileHostTimestampAndFieldsAndThePositionIsStoredWithThem() async throws {
        try await withTemporaryQueue(prefix: "ferry-file-queue") { queue, dir in
            let path = dir.appending("app.log")
            write(path, "one\ntwo\n")
            let stamp = StampSettings(fields: [.init(key: "env", value: "prod"), .init(key: "file", value: "not-this")])
            let input = try queueInput([dir.appending("*.log")], queue: queue, stamp: stamp)
            try await running(input) {
                try await expectEventually("two events stored") { queue.stats.events == 2 }
            }
            let events = try storedEvents(queue)
            #expect(events.count == 2)
            let first = try #require(events.first)
            #expect(first.hasPrefix(#"{"@timestamp":""#), "the read time, first: \(first)")
            #expect(first.contains(#""host":"test-host""#))
            #expect(first.contains(#""env":"prod""#))
            #expect(first.contains(#""message":"one","file":"\#(path)"}"#))
            #expect(!first.contains("not-this"), "the input's own file field is kept, not added twice")
            let positions = try queue.positions(withPrefix: FileState.keyPrefix(input: "file"))
            #expect(positions.count == 1)
            let state = try FileState(decoding: try #require(positions.first?.value), key: "")
            #expect(state.position == FilePosition(offset: 8))
        }
    }

    @Test func aRestartResumesFromThePositionsInTheQueue() async throws {
        try await withTemporaryQueue(prefix: "ferry-file-queue") { queue, dir in
            let path = dir.appending("app.log")
            write(path, "a\nb\n")
            try await running(try queueInput([path], queue: queue)) {
                try await expectEventually("first lines") { queue.stats.events == 2 }
            }
            write(path, "c\nd\n")
            try await running(try queueInput([path], queue: queue)) {
                try await expectEventually("the new lines") { queue.stats.events == 4 }
            }
            #expect(try storedMessages(queue) == ["a", "b", "c", "d"])
        }
    }

    @Test func renameRotationWhileStoppedWithAGlobMatchingTheRotatedFilesStoresEachLineOnce() async throws {
        try await withTemporaryQueue(prefix: "ferry-file-queue") { queue, dir in
            let path = dir.appending("app.log")
            let glob = dir.appending("app.log*")
            write(path, "1\n2\n")
            try await running(try queueInput([glob], queue: queue)) {
                try await expectEventually("before the rotation") { queue.stats.events == 2 }
            }
            // While Ferry is down: the writer finishes the old file, rotates it, starts a new one.
            write(path, "3\n")
            rename(path, dir.appending("app.log.1"))
            write(path, "4\n", append: false)
            try await running(try queueInput([glob], queue: queue)) {
                try await expectEventually("both files read") { queue.stats.events == 4 }
                rename(dir.appending("app.log.1"), dir.appending("app.log.2"))
                rename(path, dir.appending("app.log.1"))
                write(path, "5\n", append: false)
                try await expectEventually("after a second rotation") { queue.stats.events == 5 }
            }
            try await running(try queueInput([glob], queue: queue)) {
                // A third start sees three names for three known files: nothing is read again.
                write(path, "6\n")
                try await expectEventually("the new line") { queue.stats.events == 6 }
            }
            #expect(try storedMessages(queue).sorted() == ["1", "2", "3", "4", "5", "6"])
        }
    }

    @Test func copytruncateWithTheCopyInTheGlobStoresEachLineOnce() async throws {
        try await withTemporaryQueue(prefix: "ferry-file-queue") { queue, dir in
            let path = dir.appending("app.log")
            let glob = dir.appending("app.log*")
            write(path, "1\n2\n3\n")
            try await running(try queueInput([glob], queue: queue)) {
                try await expectEventually("before the rotation") { queue.stats.events == 3 }
                write(path, "4\n")
                copy(path, dir.appending("app.log.1"))
                truncate(path)
                write(path, "5\n")
                try await expectEventually("the line before the copy and the one after the truncation") { queue.stats.events == 5 }
                // Rescans see the copy again: it is known, nothing more is read.
                try await Task.sleep(for: .milliseconds(1200))  // longer than two rescan intervals: the check needs rescans to have happened
            }
            #expect(try storedMessages(queue).sorted() == ["1", "2", "3", "4", "5"])
        }
    }

    @Test func aFullQueuePausesReadingAndLosesNothing() async throws {
        let logs = RecordingLogHandler.Store()
        // Room for a few appends only: the input must wait for the consumer below.
        try await withTemporaryQueue(prefix: "ferry-file-queue", configuration: QueueConfiguration(maxBytes: 96 << 10), logs: logs) { queue, dir in
            let path = dir.appending("app.log")
            let count = 20_000
            var text = ""
            var rng = SplitMix(seed: 7)
            for i in 0..<count { text += "line \(i) \(String(rng.next(), radix: 36)) \(String(rng.next(), radix: 36)) \(String(rng.next(), radix: 36))\n" }
            write(path, text)
            let input = try queueInput([path], queue: queue, logs: logs) { configuration in
                // Appends far below max_bytes: one read chunk's events go into one append.
                configuration.appendBytes = 8 << 10
                configuration.readChunkBytes = 8 << 10
            }
            var consumed: [String] = []
            try await running(input) {
                try await expectEventually("the input paused on the full queue") {
                    logs.all.contains { $0.message.hasPrefix("input paused") }
                }
                // Nothing was read past the full queue: what is stored is a prefix of the file.
                #expect(queue.stats.events < UInt64(count))
                let deadline = ContinuousClock.now + .seconds(60)
                while consumed.count < count && ContinuousClock.now < deadline {
                    let lease = try queue.lease(maxRecords: 64)
                    if lease.records.isEmpty {
                        await queue.waitForAppend(timeout: .milliseconds(200))
                        continue
                    }
                    for stored in lease.records {
                        for line in try stored.record.events() { consumed.append(messageField(of: String(buffer: line))) }
                    }
                    try await queue.acknowledge(lease)
                }
            }
            let pauses = logs.all.filter { $0.message.hasPrefix("input paused") }.map { $0.metadata["ferry.queue.error"] ?? "" }
            #expect(consumed.count == count, "stored \(queue.stats.events), pauses: \(pauses.prefix(2))")
            let expected = text.split(separator: "\n").map(String.init)
            let first = Array(zip(consumed, expected)).firstIndex { $0.0 != $0.1 }
            #expect(first == nil, "every line once, in order; first difference at \(first ?? -1)")
        }
    }
}

/// A file input named `file` on `queue`, through the seam, with fast timers.
func queueInput(_ paths: [String], queue: Queue, stamp: StampSettings = StampSettings(), logs: RecordingLogHandler.Store = RecordingLogHandler.Store(),
                configure: (inout FileInputConfiguration) -> Void = { _ in }) throws -> FileInput {
    var configuration = FileInputConfiguration(paths: paths)
    configuration.drainIdle = .milliseconds(300)
    configuration.rescanInterval = .milliseconds(500)
    configure(&configuration)
    let intake = Intake(input: "file", queue: queue, stamp: stamp.stamp(host: "test-host"), logger: logs.logger(),
                        backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(50)))
    return try FileInput(intake: intake, configuration: configuration, logger: logs.logger())
}

/// Every event in `queue`, in order.
func storedEvents(_ queue: Queue) throws -> [String] {
    var events: [String] = []
    var next: UInt64 = 0
    while true {
        let page = try queue.peek(from: next, maxRecords: 1000)
        #expect(page.corrupt.isEmpty)
        if page.records.isEmpty && page.corrupt.isEmpty { return events }
        next = page.nextSequence
        for stored in page.records {
            for line in try stored.record.events() { events.append(String(buffer: line)) }
        }
    }
}

/// The `message` of every event in `queue`, in order.
func storedMessages(_ queue: Queue) throws -> [String] {
    try storedEvents(queue).map(messageField(of:))
}

/// The `message` of a stamped event (plain text in these tests: no escapes but those `replacingEscapes` undoes).
func messageField(of event: String) -> String {
    guard let start = event.firstRange(of: #""message":""#)?.upperBound,
          let end = event[start...].firstRange(of: #"","file":"#)?.lowerBound else { return event }
    return String(event[start..<end]).replacingEscapes()
}
