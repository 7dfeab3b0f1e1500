#if canImport(Glibc)
import Glibc
#endif
@testable import FerryFile
import FerryTestSupport
import Logging
import Synchronization

/// A sink in memory: what the queue would hold (events in order, the positions table), with a gate that
/// holds appends back like a full queue.
final class MemorySink: FileEventSink {
    struct Stored {
        var events: [String] = []
        var positions: [[UInt8]: [UInt8]] = [:]
        var appends = 0
        var waiting = 0
    }

    private let state = Mutex(Stored())
    private let gate = Mutex<(closed: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(positions: [[UInt8]: [UInt8]] = [:]) {
        state.withLock { $0.positions = positions }
    }

    func appendWaiting(_ events: FileEvents, positions: [FilePositionUpdate]) async -> Bool {
        state.withLock { $0.waiting += 1 }
        await withCheckedContinuation { continuation in
            let open = gate.withLock { gate -> Bool in
                if gate.closed { gate.waiters.append(continuation) }
                return !gate.closed
            }
            if open { continuation.resume() }
        }
        let texts = (0..<events.count).map { String(decoding: events[$0].bytes, as: UTF8.self) }
        state.withLock { state in
            state.waiting -= 1
            state.appends += 1
            state.events += texts
            for update in positions { state.positions[update.key] = update.value }
        }
        return true
    }

    /// Appends wait from now on, as when the queue is full.
    func close() { gate.withLock { $0.closed = true } }

    /// Lets waiting and later appends through.
    func open() {
        let waiters = gate.withLock { gate in
            gate.closed = false
            defer { gate.waiters = [] }
            return gate.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var stored: Stored { state.withLock { $0 } }

    /// The `message` of each stored text event.
    var messages: [String] { stored.events.map(message(of:)) }

    /// The stored positions, as `Queue.positions(prefix:)` would return them.
    var positions: [(key: [UInt8], value: [UInt8])] { stored.positions.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) } }

    /// The decoded stored states.
    var states: [FileState] { positions.compactMap { try? FileState(decoding: $0.value, key: "") } }
}

func message(of event: String) -> String {
    guard let start = event.firstRange(of: #"{"message":""#)?.upperBound,
          let end = event.ranges(of: #"","file":"#).last?.lowerBound else { return event }
    return String(event[start..<end]).replacingEscapes()
}

/// Writes (or appends) `text` to `path` with plain system calls, as a logging program would.
func write(_ path: String, _ text: String, append: Bool = true) {
    write(path, Array(text.utf8), append: append)
}

func write(_ path: String, _ bytes: [UInt8], append: Bool = true) {
    let descriptor = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
    precondition(descriptor >= 0, "open \(path): errno \(errno)")
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = Glibc.write(descriptor, raw.baseAddress! + done, raw.count - done)
            precondition(n > 0)
            done += n
        }
    }
    close(descriptor)
}

func rename(_ from: String, _ to: String) { precondition(Glibc.rename(from, to) == 0) }
func remove(_ path: String) { precondition(unlink(path) == 0) }
func truncate(_ path: String) { precondition(Glibc.truncate(path, 0) == 0) }
func copy(_ from: String, _ to: String) {
    let descriptor = open(from, O_RDONLY)
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(descriptor, &buffer, buffer.count)
        if n <= 0 { break }
        bytes += buffer[..<n]
    }
    close(descriptor)
    write(to, bytes, append: false)
}

/// A file input over `configuration`, with fast timers for tests.
func makeInput(_ paths: [String], sink: MemorySink, configure: (inout FileInputConfiguration) -> Void = { _ in },
               logs: RecordingLogHandler.Store = RecordingLogHandler.Store(), bootID: String = "test-boot") throws -> FileInput {
    var configuration = FileInputConfiguration(paths: paths)
    configuration.drainIdle = .milliseconds(300)
    configuration.rescanInterval = .seconds(1)
    configure(&configuration)
    return try FileInput(name: "files", configuration: configuration, storedPositions: sink.positions, sink: sink,
                         bootID: bootID, logger: logs.logger())
}

/// Runs `input` while `body` runs.
func running<R>(_ input: FileInput, _ body: () async throws -> R) async throws -> R {
    try await withServices([input], body)
}

/// Waits (up to 20 s) until `condition` holds; fails the test with `message` otherwise.
func expectEventually(_ message: @autoclosure () -> String, _ condition: () -> Bool) async throws {
    // 60 s: under a full parallel run on 2 cores, 20 s was seen to pass before a full queue was reached.
    let held = try await eventually(timeout: .seconds(60), every: .milliseconds(10)) { condition() }
    if !held { throw TestFailure(message()) }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
