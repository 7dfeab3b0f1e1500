@testable import FerryForward
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Testing

@Suite struct FileForwarderTests {
    /// An idle output waits for records without polling, so a stop must wake it: the graceful shutdown of
    /// an idle file output whose wait would last 300 s ends far sooner (the bound leaves room for a loaded
    /// machine, where a stop of everything took 10 s once).
    @Test func anIdleOutputStopsAtOnceAtAGracefulShutdown() async throws {
        let out = try TemporaryDirectory(prefix: "ferry-file-idle")
        defer { out.remove() }
        try await withTemporaryQueue(prefix: "ferry-forward-idle") { queue, _ in
            _ = try await queue.append(EventBatch(lines: [Array(#"{"id":"one"}"#.utf8)]))
            let output = try FileForwarder(queue: queue, configuration: FileOutputConfiguration(path: out.path), logger: quietLogger,
                                           idleWait: .seconds(300))
            let clock = ContinuousClock()
            var stopped = ContinuousClock.now
            try await withServices([output]) { () async throws in
                // Delivered, then idle: waiting for the next append.
                #expect(try await eventually { queue.stats.records == 0 })
                stopped = clock.now
            }
            #expect(clock.now - stopped < .seconds(60), "the stop woke the idle output")
        }
    }

    @Test func eventsAreWrittenAsNDJSONRotatedAndThenDeleted() async throws {
        let out = try TemporaryDirectory(prefix: "ferry-file-out")
        defer { out.remove() }
        try await withTemporaryQueue(prefix: "ferry-forward") { queue, _ in
            var expected: [String] = []
            for batch in 0..<20 {
                let lines = (0..<50).map { #"{"id":"f-\#(batch)-\#($0)","pad":"\#(String(repeating: "x", count: 40))"}"# }
                expected += lines
                _ = try await queue.append(EventBatch(lines: lines.map { Array($0.utf8) }))
            }
            let output = try FileForwarder(queue: queue, configuration: FileOutputConfiguration(path: out.path, rotateBytes: 20_000), logger: quietLogger)
            try await withServices([output]) { () async throws in
                #expect(try await eventually { queue.stats.records == 0 })
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".ndjson") }.sorted()
            #expect(files.count > 1, "rotation by size")
            let written = try files.flatMap { name in
                try String(contentsOfFile: out.appending(name), encoding: .utf8).split(separator: "\n").map(String.init)
            }
            #expect(written == expected)
            #expect(queue.stats.deliveredEvents == 1000)
        }
    }

    /// What a crash (or a hand) left of a batch's file.
    enum Left: CaseIterable { case whole, part, otherBytes, shorter, gone }

    /// After a crash, a remembered batch goes again: a file that holds it whole is left as it is; a file
    /// that holds part of it, or other bytes at its place (a power cut), is cut back to its offset and
    /// the batch written once; a file cut short or deleted by hand gets the batch at its end.
    @Test(arguments: Left.allCases)
    func aBatchGoingAgainIsWrittenOnceWhateverItsFileHolds(left: Left) async throws {
        let out = try TemporaryDirectory(prefix: "ferry-file-out")
        defer { out.remove() }
        let dir = try TemporaryDirectory(prefix: "ferry-file-queue")
        defer { dir.remove() }
        let lines = (0..<30).map { #"{"id":"r-\#($0)"}"# }
        var queue = try Queue.open(at: dir.path, logger: quietLogger)
        for chunk in stride(from: 0, to: lines.count, by: 10) {
            _ = try await queue.append(EventBatch(lines: lines[chunk ..< chunk + 10].map { Array($0.utf8) }))
        }
        // The state a crash leaves: the batch remembered with its place, the file written up to some point.
        let lease = try queue.defaultConsumer.lease(maxRecords: 10)
        let batch = try lease.records.map { stored in
            var payload = try stored.record.decompressedPayload()
            return payload.readBytes(length: payload.readableBytes)!
        }.joined()
        let before = Array("{\"id\":\"earlier\"}\n".utf8)
        let name = lease.sequences[0]
        let placement = FileForwarder.Placement(file: name, offset: UInt64(before.count), length: UInt64(batch.count))
        #expect(try await queue.defaultConsumer.remember(lease.sequences, note: placement.encoded))
        // A note can be replaced (the batch went elsewhere), only that of a remembered batch.
        #expect(try await queue.defaultConsumer.renote(startingAt: name, note: [9]))
        #expect(try queue.defaultConsumer.rememberedBatch(startingAt: name)?.note == [9])
        #expect(try queue.defaultConsumer.rememberedBatch(startingAt: name)?.last == lease.sequences.last)
        #expect(try await !queue.defaultConsumer.renote(startingAt: name + 1, note: [9]), "no batch starts there")
        #expect(try await queue.defaultConsumer.renote(startingAt: name, note: placement.encoded))
        let path = out.appending("ferry-\(String(format: "%020llu", name)).ndjson")
        let written: [UInt8]? = switch left {
        case .whole: before + batch
        case .part: before + batch.prefix(batch.count / 2)
        case .otherBytes: before + [UInt8](repeating: 0, count: batch.count + 10)
        case .shorter: []
        case .gone: nil
        }
        if let written { try Data(written).write(to: URL(fileURLWithPath: path)) }
        queue.close()

        queue = try Queue.open(at: dir.path, logger: quietLogger)
        defer { queue.close() }
        let output = try FileForwarder(queue: queue, configuration: FileOutputConfiguration(path: out.path), logger: quietLogger)
        try await withServices([output]) { () async throws in
            #expect(try await eventually { queue.stats.records == 0 })
        }
        let content = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let earlier = [.whole, .part, .otherBytes].contains(left) ? [#"{"id":"earlier"}"#] : []
        #expect(content == earlier + lines, "the batch once, then the rest")
        #expect(queue.stats.deliveredEvents == 30)
        #expect(try queue.defaultConsumer.rememberedBatch(startingAt: name) == nil, "settled: forgotten")
    }

    @Test func retentionKeepsMaxFilesAndDeletesFilesOlderThanMaxAge() async throws {
        let out = try TemporaryDirectory(prefix: "ferry-file-out")
        defer { out.remove() }
        try await withTemporaryQueue(prefix: "ferry-forward") { queue, _ in
            var expected: [String] = []
            for batch in 0..<20 {
                let lines = (0..<50).map { #"{"id":"k-\#(batch)-\#($0)","pad":"\#(String(repeating: "x", count: 40))"}"# }
                expected += lines
                _ = try await queue.append(EventBatch(lines: lines.map { Array($0.utf8) }))
            }
            let configuration = FileOutputConfiguration(path: out.path, rotateBytes: 10_000, maxFiles: 3)
            let output = try FileForwarder(queue: queue, configuration: configuration, logger: quietLogger)
            try await withServices([output]) { () async throws in
                #expect(try await eventually { queue.stats.records == 0 })
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".ndjson") }.sorted()
            #expect(files.count == 3, "\(files)")
            // The newest files are the ones kept: they end with the last events, in order.
            let kept = try files.flatMap { name in
                try String(contentsOfFile: out.appending(name), encoding: .utf8).split(separator: "\n").map(String.init)
            }
            #expect(kept.count < expected.count)
            #expect(Array(expected.suffix(kept.count)) == kept)

            // max_age: with the clock a day on, every file but the one named current goes; other files stay.
            try Data("keep".utf8).write(to: URL(fileURLWithPath: out.appending("notes.txt")))
            let aged = try FileForwarder(queue: queue, configuration: FileOutputConfiguration(path: out.path, maxAgeSeconds: 3600), logger: quietLogger)
            let current = try #require(UInt64(files.last!.dropFirst(6).prefix(20)))
            // Every file last written at t0: an hour later none is older than max_age, a second after that all are.
            let t0 = time(nil) - 10
            for name in files + ["notes.txt"] {
                var times = utimbuf(actime: t0, modtime: t0)
                #expect(utime(out.appending(name), &times) == 0)
            }
            #expect(aged.pruneFiles(keeping: current, now: t0 + 3600).isEmpty, "not older than max_age yet")
            #expect(aged.pruneFiles(keeping: current, now: t0 + 3601) == Array(files.dropLast()))
            let left = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(left == [files.last!, "notes.txt"])
        }
    }

    @Test func anUnwritableDirectoryIsAClearConfigurationError() async throws {
        try await withTemporaryQueue(prefix: "ferry-forward") { queue, _ in
            let file = try TemporaryDirectory(prefix: "ferry-file")
            defer { file.remove() }
            try Data("x".utf8).write(to: URL(fileURLWithPath: file.appending("plain")))
            #expect(throws: ConfigurationError.self) {
                _ = try FileForwarder(queue: queue, configuration: FileOutputConfiguration(path: file.appending("plain/out")), logger: quietLogger)
            }
        }
    }
}
