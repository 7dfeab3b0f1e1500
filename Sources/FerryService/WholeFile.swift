#if canImport(Glibc)
import Glibc
#endif

/// A file that could not be read: the `errno` of the call that failed.
package struct FileReadError: Error, Equatable, Sendable {
    package let code: Int32
    /// strerror's text for `code` ("No such file or directory").
    package var reason: String { String(cString: strerror(code)) }
}

/// The whole content of the file at `path`, read to its end: also for files of `/proc`, whose size `stat`
/// does not tell (the configuration file, `/proc/self/smaps`).
package func readWholeFile(_ path: String) throws(FileReadError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileReadError(code: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw FileReadError(code: errno) }
        if n == 0 { return bytes }
        bytes += buffer[..<n]
    }
}
