#if canImport(Glibc)
import Glibc
#endif
import FerryFile
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import Testing

/// `ferry-tools files`: the file input's positions, with each file's lag, read while the queue is held.
@Suite struct FilesCommandTests {
    @Test func filesShowsEachFollowedFileWithItsPositionAndLag() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-tools-files")
        defer { dir.remove() }
        let log = dir.appending("app.log")
        try String(repeating: "a line of the log\n", count: 10).write(toFile: log, atomically: false, encoding: .utf8)  // 180 bytes
        var info = stat()
        #expect(stat(log, &info) == 0)
        let id = FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        let followed = FileState(id: id, fingerprint: [], position: FilePosition(offset: 36), window: [], name: log, path: log,
                                 size: 36, lastSeen: 1_700_000_000_000, bootID: "b")
        let gone = FileState(id: FileID(device: 1, inode: 2), fingerprint: [], position: FilePosition(offset: 50, skipping: true), window: [],
                             name: "/old.log", path: dir.appending("gone.log"), size: 80, lastSeen: 1_700_000_000_000, bootID: "b", gone: true)
        // Held by "the agent" (this process) while the tool reads.
        let agent = try Queue.open(at: dir.appending("queue"), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        defer { agent.close() }
        _ = try await agent.append(EventBatch(lines: [[UInt8]]()), positions: [
            InputPosition(key: FileState.key(input: "file", id: followed.id), value: followed.encoded),
            InputPosition(key: FileState.key(input: "file", id: gone.id), value: gone.encoded),
        ])
        let tools = builtProductsDirectory() + "/ferry-tools"
        let result = try await run(tools, ["files", "--json", "--data-dir", dir.appending("queue")])
        #expect(result.status == 0, "\(result.errors)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        let live = try #require(lines.first { $0.contains(#""path":"\#(log)""#) })
        #expect(live.contains(#""offset":36,"skipping":false,"size":180,"lag":144,"status":"followed""#), "\(live)")
        let old = try #require(lines.first { $0.contains("gone.log") })
        #expect(old.contains(#""offset":50,"skipping":true,"size":80,"lag":30,"status":"gone""#), "\(old)")
        let table = try await run(tools, ["files", "--data-dir", dir.appending("queue")])
        #expect(table.output.contains("144 B") && table.output.contains("50+skip"), "\(table.output)")
    }
}
