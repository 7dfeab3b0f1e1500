@testable import FerryIngest
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import Testing

/// The HTTP ingest through the input seam: stamping, and backpressure of a full queue.
@Suite struct IngestSeamTests {
    @Test func eventsGetTheReadTimeHostlessAndTheConfiguredFields() async throws {
        let stamp = StampSettings(fields: [.init(key: "env", value: "prod")]).stamp(host: nil)
        try await withIngest(stamp: stamp) { ingest in
            let before = currentTimeMilliseconds()
            let body = #"{"message":"no time"}"# + "\n" + #"{"@timestamp":"2020-01-01T00:00:00.000Z","message":"timed","env":"dev"}"# + "\n"
            let answer = try await curl(["-H", "Content-Type: application/x-ndjson", ingest.url], body: Data(body.utf8))
            let after = currentTimeMilliseconds()
            #expect(answer.status == 200)
            let events = try ingest.storedEvents()
            #expect(events.count == 2)
            // The first gets the request's time, with milliseconds, in UTC, and the field.
            let prefix = #"{"@timestamp":""#
            #expect(events[0].hasPrefix(prefix))
            let stamped = String(events[0].dropFirst(prefix.count).prefix(24))
            let allowed = Set((before...after).map { Timestamp.rfc3339(milliseconds: $0) })
            #expect(allowed.contains(stamped), "\(stamped) is not a time between the request's start and end")
            #expect(events[0].hasSuffix(#"","env":"prod","message":"no time"}"#))
            // The second keeps its own time and field, byte for byte; no `host` is added by the HTTP input.
            #expect(events[1] == #"{"@timestamp":"2020-01-01T00:00:00.000Z","message":"timed","env":"dev"}"#)
            #expect(!events.contains { $0.contains(#""host""#) })

            // Text lines are stamped too.
            let text = try await curl(["-H", "Content-Type: text/plain", ingest.url], body: Data("plain line\n".utf8))
            #expect(text.status == 200)
            let last = try ingest.storedEvents().last!
            #expect(last.hasPrefix(prefix) && last.hasSuffix(#"","env":"prod","message":"plain line"}"#))
        }
    }

    /// A 1 MiB queue whose output is dead: the ingest answers 429 with Retry-After once it is full, stores
    /// nothing of a refused request, and stores again once an output frees room.
    @Test func aFullQueueAnswers429AndStoresAgainOnceRoomIsFreed() async throws {
        try await withIngest(queueConfiguration: QueueConfiguration(maxBytes: 1 << 20)) { ingest in
            var rng = SeededGenerator(seed: 7)
            var accepted = 0
            var refused: Int?
            for request in 0..<200 {
                // Random hex compresses about 2:1, so each 64 KiB request takes about 32 KiB of the queue.
                let lines = (0..<64).map { i in #"{"r":\#(request),"i":\#(i),"pad":"\#(rng.hex(1000))"}"# }
                let answer = try await curl(["-i", "-H", "Content-Type: application/x-ndjson", ingest.url], body: Data((lines.joined(separator: "\n") + "\n").utf8))
                if answer.status == 200 {
                    accepted += 1
                } else {
                    #expect(answer.status == 429)
                    #expect(answer.body.lowercased().contains("retry-after: 5"))
                    #expect(answer.body.contains(#""error":"queue_full""#))
                    refused = request
                    break
                }
            }
            let full = try #require(refused, "the queue never filled")
            #expect(accepted == full && accepted > 10)
            let storedWhenFull = try ingest.storedEvents()
            #expect(storedWhenFull.count == accepted * 64, "nothing of the refused request is stored")

            // An output comes back and delivers the oldest records: room again.
            let lease = try ingest.queue.lease(maxRecords: 8)
            try await ingest.queue.acknowledge(lease)
            let answer = try await curl(["-H", "Content-Type: application/x-ndjson", ingest.url], body: Data(#"{"after":"room"}"#.utf8))
            #expect(answer.status == 200)
            #expect(try ingest.storedEvents().last == #"{"after":"room"}"#)
        }
    }
}
