public import FerryQueue
import Foundation

/// A directory under the system's temporary folder, removed with everything in it by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    /// Makes a new, empty directory named after `prefix`.
    public init(prefix: String = "ferry-test") throws {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        path = String(cString: made)
    }

    /// A path inside the directory.
    public func appending(_ name: String) -> String { path + "/" + name }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A queue in a temporary directory (named after `prefix`), closed and removed when `body` ends. Its logs
/// go to `logs`, where a test can read them.
public func withTemporaryQueue<R>(
    prefix: String = "ferry-queue",
    configuration: QueueConfiguration = QueueConfiguration(),
    logs: RecordingLogHandler.Store = RecordingLogHandler.Store(),
    _ body: (Queue, TemporaryDirectory) async throws -> R
) async throws -> R {
    let dir = try TemporaryDirectory(prefix: prefix)
    defer { dir.remove() }
    let queue = try Queue.open(at: dir.path, configuration: configuration, logger: logs.logger())
    defer { queue.close() }
    return try await body(queue, dir)
}
