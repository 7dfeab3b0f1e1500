@testable import FerryForward
import FerryPipeline
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Testing

@Suite struct FileForwarderTests {
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
