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
