/// Where `$NOTIFY_SOCKET` says systemd listens: a file-system path (`/run/systemd/notify`) or a Linux
/// abstract socket (`@name`, written with a leading NUL byte in the address). Pure parsing.
package struct NotifySocketAddress: Sendable, Hashable {
    /// The bytes of `sockaddr_un.sun_path` as sent: a path without its terminating NUL, or NUL + name
    /// for an abstract socket. The address length is the offset of `sun_path` plus this count (plus one
    /// for a path's NUL).
    package let pathBytes: [UInt8]
    /// True for an abstract socket (no file; the name lives in the network namespace).
    package let isAbstract: Bool

    /// `sizeof(sockaddr_un.sun_path)` on Linux.
    static let capacity = 108

    /// Parses the value of `NOTIFY_SOCKET`.
    ///
    /// Throws `.invalidEnvironment` for an empty value, a relative path, a `vsock:` address (systemd
    /// in a VM, which Ferry does not speak) or a name too long for a socket address.
    package init(_ value: String) throws(ServiceError) {
        let bytes = Array(value.utf8)
        switch bytes.first {
        case UInt8(ascii: "/"):
            // The kernel needs room for the terminating NUL of a path.
            guard bytes.count < Self.capacity, !bytes.contains(0) else {
                throw ServiceError(.invalidEnvironment, "NOTIFY_SOCKET=\(value) is longer than a Unix socket path may be (\(Self.capacity - 1) bytes); systemd sets a short one, so check what set this variable")
            }
            pathBytes = bytes
            isAbstract = false
        case UInt8(ascii: "@"):
            guard bytes.count <= Self.capacity, bytes.count > 1 else {
                throw ServiceError(.invalidEnvironment, "NOTIFY_SOCKET=\(value) is not a usable abstract socket name (1 to \(Self.capacity - 1) bytes after @)")
            }
            pathBytes = [0] + bytes.dropFirst()
            isAbstract = true
        default:
            throw ServiceError(.invalidEnvironment, "NOTIFY_SOCKET=\(value) is neither an absolute path nor an abstract socket (@name); Ferry speaks only AF_UNIX to systemd, so unset it or run under systemd's own")
        }
    }
}
