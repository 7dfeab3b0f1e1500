#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes all of `bytes` to `fd`, going on after short writes and interrupted ones: the one write-all
/// loop of Ferry (the file output, `ferry-tools export`). Returns 0 when everything is written, or the
/// `errno` of the write that failed (`ENOSPC` for a full disk, say); how much was written then is unknown.
package func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
    guard let base = bytes.baseAddress else { return 0 }
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, base + offset, bytes.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        if n == 0 { return EIO }  // a regular file or pipe that takes nothing: never loop forever
        offset += n
    }
    return 0
}
