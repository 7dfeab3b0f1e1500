import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import FerryIngest

/// `IngestCoalescer`: the small uploads an event loop finishes in one pass are appended as one record, each
/// answered with its own count; a refusal of the lot is decided again per upload.
@Suite(.timeLimit(.minutes(2)))
struct IngestCoalescerTests {
    let generator = EventGenerator(prefix: "co")

    /// The handler of an ingest in front of `queue`, its input's counters in `metrics`.
    private func handler(_ queue: Queue, metrics: TestMetrics = TestMetrics()) -> IngestHandler {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        return IngestHandler(settings: IngestLiveSettings(auth: nil, limits: IngestConfiguration.Limits()),
                             intake: Intake(input: "http", queue: queue, stamp: .none, logger: logger, metrics: metrics),
                             logger: logger, metrics: IngestMetrics(), isAccepting: { true })
    }

    /// `ferry_input_rejections_total{input="http", reason}`; 0 when nothing was counted.
    private func rejections(_ metrics: TestMetrics, _ reason: String) -> Int64 {
        (try? metrics.expectCounter("ferry_input_rejections_total", [("input", "http"), ("reason", reason)]))?.totalValue ?? 0
    }

    /// `ferry_input_events_total{input="http"}`.
    private func events(_ metrics: TestMetrics) throws -> Int64 {
        try metrics.expectCounter("ferry_input_events_total", [("input", "http")]).totalValue
    }

    /// An upload of `lines`, whose outcome goes to `outcomes` at `index`.
    private func upload(_ lines: [String], index: Int, into outcomes: Outcomes) throws -> IngestHandler.Pending {
        var builder = RecordBuilder()
        for line in lines { builder.append(line: Array(line.utf8)) }
        let take = builder.takeLines()
        let taken = try #require(take)
        return IngestHandler.Pending(lines: taken.lines, events: taken.events, sourceBytes: taken.lines.readableBytes) {
            outcomes.set(index, $0)
        }
    }

    /// Adds `uploads` to a coalescer from one task of its event loop, as `FastIngest` does while the loop
    /// handles its ready sockets, and waits for every outcome.
    private func addInOnePass(_ uploads: [IngestHandler.Pending], to handler: IngestHandler, outcomes: Outcomes) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let coalescer = IngestCoalescer(loop: loop, handler: handler)
        var failure: (any Error)?
        do {
            try await loop.submit { for upload in uploads { coalescer.add(upload) } }.get()
            // The loop stays up until every upload has its outcome: a refused pack is retried from it.
            #expect(try await eventually(timeout: .seconds(20)) { outcomes.count == uploads.count })
        } catch {
            failure = error
        }
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    /// `count` events of 3,000 random hex digits each, numbered under `key`: they barely compress, so the
    /// sizes of their records add up whether they are stored alone or packed.
    private func incompressibleLines(_ count: Int, key: String = "i") -> [String] {
        var random = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef")
        return (0..<count).map { i in
            #"{"\#(key)":\#(i),"blob":""# + String((0..<3000).map { _ in hex[Int(random.next() % 16)] }) + #""}"#
        }
    }

    /// Adds each of `lines` as an upload of its own in one pass of a loop in front of `queue`: their outcomes,
    /// and the input's counters.
    private func addOneUploadEach(_ lines: [String], to queue: Queue) async throws -> (Outcomes, TestMetrics) {
        let outcomes = Outcomes()
        let uploads = try lines.enumerated().map { try upload([$0.element], index: $0.offset, into: outcomes) }
        let metrics = TestMetrics()
        try await addInOnePass(uploads, to: handler(queue, metrics: metrics), outcomes: outcomes)
        return (outcomes, metrics)
    }

    @Test func theUploadsOfOnePassAreStoredAsOneRecordAndEachAnsweredWithItsCount() async throws {
        try await withTemporaryQueue { queue, _ in
            let outcomes = Outcomes()
            let sizes = [1, 3, 1, 2]
            var lines: [[String]] = []
            for (i, size) in sizes.enumerated() { lines.append(generator.lines(batch: i, count: size)) }
            let uploads = try lines.enumerated().map { try upload($0.element, index: $0.offset, into: outcomes) }
            let metrics = TestMetrics()
            try await addInOnePass(uploads, to: handler(queue, metrics: metrics), outcomes: outcomes)

            #expect(outcomes.storedCounts == sizes.map { Int?($0) })
            #expect(try events(metrics) == Int64(sizes.reduce(0, +)))
            let page = try queue.peek(from: 0, maxRecords: 100)
            #expect(page.records.count == 1)
            // In the order the uploads ended.
            #expect(try page.records.flatMap { try $0.record.events().map { String(buffer: $0) } } == lines.flatMap { $0 })
            #expect(queue.stats.appendedEvents == UInt64(sizes.reduce(0, +)))
        }
    }

    /// Three uploads that each fit in the queue, but not all together: the packed batch is refused as larger
    /// than the whole queue, and then each is decided alone, as if it had come by itself: the first two are
    /// stored, the third is refused because the queue is full.
    @Test func aRefusedPackIsDecidedAgainUploadByUpload() async throws {
        let lines = incompressibleLines(3)
        let alone = lines.map { EventBatch(lines: [Array($0.utf8)]).storedBytes }
        let packed = EventBatch(lines: lines.map { Array($0.utf8) }).storedBytes
        // Room for two of them alone, not for the three, nor for the three packed.
        let maxBytes = alone[0] + alone[1] + alone[2] / 2
        try #require(packed > maxBytes)

        try await withTemporaryQueue(configuration: QueueConfiguration(maxBytes: maxBytes)) { queue, _ in
            let (outcomes, metrics) = try await addOneUploadEach(lines, to: queue)

            #expect(outcomes.storedCounts == [1, 1, nil])
            #expect(outcomes.refusalStatuses == [nil, nil, 429])
            // One refusal, the third request's; the pack's own refusal is not counted.
            #expect(rejections(metrics, "queue_full") == 1)
            #expect(rejections(metrics, "too_large") == 0)
            #expect(try events(metrics) == 2)
            let page = try queue.peek(from: 0, maxRecords: 100)
            #expect(try page.records.flatMap { try $0.record.events().map { String(buffer: $0) } } == Array(lines.prefix(2)))
        }
    }

    /// The same with room in the queue for the pack as such, but not next to what it already holds: the
    /// pack is refused as full, and each upload is decided alone again.
    @Test func aPackRefusedAsFullIsDecidedAgainUploadByUpload() async throws {
        let lines = incompressibleLines(3)
        let alone = lines.map { EventBatch(lines: [Array($0.utf8)]).storedBytes }
        let packed = EventBatch(lines: lines.map { Array($0.utf8) }).storedBytes
        let held = EventBatch(lines: incompressibleLines(1, key: "held").map { Array($0.utf8) })
        let maxBytes = held.storedBytes + alone[0] + alone[1] + alone[2] / 2
        try #require(packed <= maxBytes && packed > maxBytes - held.storedBytes)

        try await withTemporaryQueue(configuration: QueueConfiguration(maxBytes: maxBytes)) { queue, _ in
            _ = try await queue.append(held)
            let (outcomes, metrics) = try await addOneUploadEach(lines, to: queue)

            #expect(outcomes.storedCounts == [1, 1, nil])
            #expect(outcomes.refusalStatuses == [nil, nil, 429])
            #expect(rejections(metrics, "queue_full") == 1)
            #expect(queue.stats.appendedEvents == 3)
        }
    }

    /// A body whose events are all still uncompressed is given as lines (stamped as they are stored); one
    /// with a gzip member stored as it came is a batch, which is never packed with others.
    @Test func aDecoderGivesLinesUnlessAMemberIsStoredAsItCame() throws {
        let body = (1...3).map { #"{"k":\#($0)}"# + "\n" }.joined()
        var plain = try RequestDecoder(format: .ndjson, gzip: false, limits: IngestConfiguration.Limits(), stamp: EventStamp(), readAt: 1_700_000_000_000)
        try plain.consume(ByteBuffer(string: body))
        guard case .lines(let taken, let events) = try plain.finishLines() else {
            Issue.record("a plain NDJSON body was sealed into records")
            return
        }
        #expect(events == 3)
        let stamped = String(buffer: taken).split(separator: "\n").map(String.init)
        #expect(stamped.count == 3)
        #expect(stamped.allSatisfy { $0.contains(#""@timestamp":"2023-11-14T22:13:20.000Z""#) }, "\(stamped)")

        // A gzip member of events that already carry `@timestamp` passes through as it came.
        let timed = generator.lines(batch: 7, count: 3)
        var gzipBody = ByteBuffer()
        let text = timed.map { $0 + "\n" }.joined()
        Array(text.utf8).withUnsafeBytes { Gzip.compress($0, into: &gzipBody) }
        var compressed = try RequestDecoder(format: .ndjson, gzip: true, limits: IngestConfiguration.Limits(), stamp: EventStamp())
        try compressed.consume(gzipBody)
        guard case .batch(let batch) = try compressed.finishLines() else {
            Issue.record("a member stored as it came was given as lines")
            return
        }
        #expect(compressed.membersStoredAsSent == 1)
        #expect(try batch.records.flatMap { try $0.events().map { String(buffer: $0) } } == timed)
    }

    /// Through the server: many clients at once, each answered with its own count, every event stored once.
    @Test func concurrentClientsAreEachAnsweredAndEveryEventIsStoredOnce() async throws {
        try await withIngest { ingest in
            let clients = 16, requests = 5
            let wrong = try await withThrowingTaskGroup(of: [String].self) { group in
                for client in 0..<clients {
                    group.addTask {
                        try await onThread {
                            let connection = try RawConnection(port: ingest.port)
                            defer { connection.close() }
                            var wrong: [String] = []
                            for request in 0..<requests {
                                // Client c's request r holds r + 1 events.
                                let body = (0...request).map { #"{"c":\#(client),"r":\#(request),"e":\#($0)}"# + "\n" }.joined()
                                connection.send(Array(FastIngestTests.post(body).utf8))
                                let answer = connection.read(until: "}")
                                if !(answer.hasPrefix("HTTP/1.1 200") && answer.contains(#"{"stored":\#(request + 1)}"#)) { wrong.append(answer) }
                            }
                            return wrong
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(wrong.isEmpty, "\(wrong)")
            let stored = try ingest.storedEvents()
            #expect(stored.count == clients * requests * (requests + 1) / 2)
            #expect(Set(stored).count == stored.count)
        }
    }
}

/// The outcomes of uploads by index, set from the queue's writer thread.
private final class Outcomes: Sendable {
    private let results = Mutex<[Int: Result<(events: Int, duplicate: Bool), IngestError>]>([:])

    func set(_ index: Int, _ result: Result<(events: Int, duplicate: Bool), IngestError>) {
        results.withLock { $0[index] = result }
    }

    var count: Int { results.withLock { $0.count } }

    /// Events stored per upload, in index order; nil for a refused one.
    var storedCounts: [Int?] {
        results.withLock { results in
            results.keys.sorted().map { if case .success(let stored) = results[$0]! { stored.events } else { nil } }
        }
    }

    /// The status of each refusal, in index order; nil for a stored upload.
    var refusalStatuses: [Int?] {
        results.withLock { results in
            results.keys.sorted().map { if case .failure(let error) = results[$0]! { error.status } else { nil } }
        }
    }
}
