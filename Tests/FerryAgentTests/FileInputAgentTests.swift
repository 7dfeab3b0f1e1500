import FerryTestSupport
import Foundation
import Testing

/// The file input in a real `ferry` process: configured in YAML and by `--tail`, its events stamped by the
/// seam, its positions kept across a SIGKILL.
@Suite(.serialized) struct FileInputAgentTests {
    @Test func ferryFollowsFilesFromTheConfigurationAndTailAcrossASigkill() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-e2e-file")
        defer { dir.remove() }
        let logs = dir.appending("logs")
        try FileManager.default.createDirectory(atPath: logs + "/more", withIntermediateDirectories: true)
        let config = dir.appending("file.yaml")
        try """
        input:
          file:
            paths: ["\(logs)/*.log"]
            format: json
            fields: { site: edge-1 }
        """.write(toFile: config, atomically: true, encoding: .utf8)
        func lines(_ prefix: String, _ range: Range<Int>) -> String {
            range.map { #"{"id":"\#(prefix)-\#($0)","message":"from a file"}"# + "\n" }.joined()
        }
        try lines("a", 0..<2000).write(toFile: logs + "/a.log", atomically: false, encoding: .utf8)
        try lines("b", 0..<500).write(toFile: logs + "/more/b.txt", atomically: false, encoding: .utf8)
        let out = dir.appending("out")
        let ferry = FerryProcess(name: "file-edge", dir: dir, extra: ["--config", config, "--output-file", out, "--tail", logs + "/more/*.txt"])
        defer { ferry.terminate() }
        try await ferry.start()
        #expect(try await eventually(timeout: .seconds(60)) { try deliveredIDs(out).count == 2500 })
        try await ferry.stop(SIGKILL)

        // Written while Ferry is down: read from the stored positions after the restart.
        let handle = try #require(FileHandle(forWritingAtPath: logs + "/a.log"))
        handle.seekToEndOfFile()
        handle.write(Data(lines("a", 2000..<3000).utf8))
        try handle.close()
        try await ferry.start(portsMayChange: true)  // reached by its output file only
        #expect(try await eventually(timeout: .seconds(60)) { try deliveredIDs(out).count == 3500 })
        try await ferry.stop()
        let ids = Set(try deliveredIDs(out).keys)
        #expect(ids == Set((0..<3000).map { "a-\($0)" } + (0..<500).map { "b-\($0)" }))
        let sample = try String(contentsOfFile: out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out).first { $0.hasSuffix(".ndjson") } ?? ""), encoding: .utf8)
        let first = try #require(sample.split(separator: "\n").first)
        #expect(first.contains(#""@timestamp":""#) && first.contains(#""host":""#) && first.contains(#""site":"edge-1""#))
        #expect(first.contains(#""file":"\#(logs)/"#), "events carry their file: \(first)")
    }
}
