@testable import FerryForward
import FerryIngest
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// A downstream stub: records every request (its `Ferry-Batch` and decoded events) and answers with the
/// status its policy gives (200 by default).
final class StubReceiver: Service, Sendable {
    struct Received: Sendable {
        var requests = 0
        var batches: [String] = []
        var events: [String] = []
    }

    let received = Mutex(Received())
    let policy: Mutex<@Sendable ([String]) -> Int>
    private let listening = ListeningPort()

    init(policy: @escaping @Sendable ([String]) -> Int = { _ in 200 }) {
        self.policy = Mutex(policy)
    }

    func setStatus(_ status: Int) { policy.withLock { $0 = { _ in status } } }

    var port: Int {
        get async { await listening.value }
    }

    func run() async throws {
        let router = Router()
        router.post("/") { [self] request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 20)
            let ndjson = try body.withUnsafeReadableBytes { try Gzip.decompress($0, maxOutputBytes: 256 << 20) }
            let events = NDJSON.lines(of: ndjson).map { String(buffer: $0) }
            let status = policy.withLock { $0 }(events)
            received.withLock { state in
                state.requests += 1
                if status == 200 {
                    state.batches.append(request.headers.first { $0.name.canonicalName == "ferry-batch" }?.value ?? "")
                    state.events += events
                }
            }
            return Response(status: .init(code: status), body: .init(byteBuffer: ByteBuffer(string: "status \(status)")))
        }
        let quiet = Logger(label: "stub") { _ in SwiftLogNoOpLogHandler() }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { [self] channel in
                                  let port = channel.localAddress!.port!
                                  listening.set(port)
                              }, logger: quiet)
        try await app.run()
    }
}

/// Appends `count` single-event batches with ids `<prefix>-<i>`; returns the ids in order.
@discardableResult
func appendEvents(_ queue: Queue, prefix: String, count: Int, marker: (Int) -> String = { _ in "ok" }) async throws -> [String] {
    var ids: [String] = []
    for i in 0..<count {
        let id = "\(prefix)-\(i)"
        ids.append(id)
        _ = try await queue.append(EventBatch(lines: [Array(#"{"id":"\#(id)","m":"\#(marker(i))"}"#.utf8)]))
    }
    return ids
}

/// `count` stub receivers, each behind its own fault proxy (passing until told otherwise), for the
/// length of `body`.
func withReceiversBehindProxies(_ count: Int, _ body: ([StubReceiver], [FaultProxy]) async throws -> Void) async throws {
    let receivers = (0..<count).map { _ in StubReceiver() }
    try await withServices(receivers) {
        var proxies: [FaultProxy] = []
        defer { proxies.forEach { $0.stop() } }
        for receiver in receivers { proxies.append(try FaultProxy(upstreamPort: await receiver.port)) }
        try await body(receivers, proxies)
    }
}

func eventID(_ line: String) -> String? {
    guard let start = line.range(of: #""id":""#)?.upperBound, let end = line[start...].firstIndex(of: "\"") else { return nil }
    return String(line[start..<end])
}

func httpOutput(_ ports: [Int], _ configure: (inout HTTPOutputConfiguration) -> Void = { _ in }) -> HTTPOutputConfiguration {
    var configuration = HTTPOutputConfiguration(hosts: ports.map { "127.0.0.1:\($0)" })
    configuration.backoffBaseMilliseconds = 20
    configuration.backoffCapMilliseconds = 500
    configure(&configuration)
    return configuration
}

let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// A clock the test moves by hand, for the http output's host choice, backoffs and hedging.
final class ManualClock: Sendable {
    private struct Sleeper {
        let id: Int
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<Void, Never>
    }

    private let state: Mutex<(now: ContinuousClock.Instant, sleepers: [Sleeper], nextID: Int)>

    init(start: ContinuousClock.Instant = .now) {
        state = Mutex((start, [], 0))
    }

    var now: ContinuousClock.Instant { state.withLock { $0.now } }

    /// The earliest instant a task waits for, if one waits.
    var earliestWait: ContinuousClock.Instant? { state.withLock { $0.sleepers.map(\.deadline).min() } }

    var outputClock: OutputClock {
        OutputClock(now: { [self] in now }, sleep: { [self] in await sleep(until: $0) })
    }

    func sleep(until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let due = state.withLock { state -> Bool in
                    if deadline <= state.now || Task.isCancelled { return true }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return false
                }
                if due { continuation.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume()
        }
    }

    /// Moves the clock and wakes every task whose instant has come.
    func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.now += duration
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}
