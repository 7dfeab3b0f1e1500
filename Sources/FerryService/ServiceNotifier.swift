#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
package import Logging
import Synchronization

/// Sends systemd notifications (`READY=1`, `STOPPING=1`, `STATUS=`, `WATCHDOG=1`, `RELOADING=1`) to
/// `$NOTIFY_SOCKET`, speaking the protocol itself: one `AF_UNIX` datagram per notification, no libsystemd.
///
/// Guarantees: a send never blocks (`MSG_DONTWAIT`) and never raises SIGPIPE; sends from several tasks
/// may interleave but each notification is one datagram, so systemd reads it whole. The socket is opened
/// once and closed with the notifier. systemd learns the sender's pid from the kernel (`SO_PASSCRED` on
/// its side), so the message counts as the main process's (`NotifyAccess=main`).
///
/// Failure modes: `send` throws `.socket` when the datagram could not be sent (no listener at the path,
/// its buffer full); `notify` logs that instead, because a lost status line must not stop the agent.
/// A lost one-shot notification (`READY=1`, `RELOADING=1`, `STOPPING=1`) would leave systemd waiting
/// (a `Type=notify-reload` unit times out its reload), so `notify` keeps those that failed, in order, and
/// `sendPending` (called with every watchdog or status tick) sends them again before anything newer of
/// their kind. The socket's queue is short (`net.unix.max_dgram_qlen`, 10 by default): a listener that
/// reads late fills it with pings.
package final class ServiceNotifier: Sendable {
    package let address: NotifySocketAddress
    private let descriptor: Int32
    private let logger: Logger
    /// One-shot notifications not yet delivered, oldest first; at most `pendingLimit`.
    private let pending = Mutex<[ServiceNotification]>([])
    private static let pendingLimit = 16

    /// The notifier systemd asked for, or nil when `NOTIFY_SOCKET` is unset or empty (not started by
    /// systemd, or not as `Type=notify`): then there is nobody to tell, and the agent skips notifying.
    ///
    /// Throws `.invalidEnvironment` when the variable holds something unusable, `.socket` when no socket
    /// could be made (out of descriptors).
    package static func fromEnvironment(_ environment: (String) -> String? = processEnvironment,
                                        logger: Logger) throws(ServiceError) -> ServiceNotifier? {
        guard let value = environment("NOTIFY_SOCKET"), !value.isEmpty else { return nil }
        return try ServiceNotifier(address: NotifySocketAddress(value), logger: logger)
    }

    /// A notifier that sends to `address`.
    package init(address: NotifySocketAddress, logger: Logger) throws(ServiceError) {
        #if canImport(Glibc)
        let type = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let type = SOCK_DGRAM
        #endif
        let descriptor = socket(AF_UNIX, type, 0)
        guard descriptor >= 0 else {
            throw ServiceError(.socket, "cannot make a socket to notify systemd: \(String(cString: strerror(errno))); raise the process's descriptor limit")
        }
        self.address = address
        self.descriptor = descriptor
        self.logger = logger
    }

    deinit {
        close(descriptor)
    }

    /// Sends `notification` as one datagram. Throws `.socket` if it could not be sent.
    package func send(_ notification: ServiceNotification) throws(ServiceError) {
        let text = Array(notification.encoded.utf8)
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = address.pathBytes
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            path.copyBytes(from: pathBytes)
        }
        // A path is sent with its terminating NUL (already zero in the struct); an abstract name is
        // exactly its bytes, because every byte of it, NULs included, is part of the name.
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count + (address.isAbstract ? 0 : 1)
        var sent: Int
        repeat {
            sent = text.withUnsafeBytes { bytes in
                withUnsafePointer(to: &socketAddress) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketPointer in
                        sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL),
                               socketPointer, socklen_t(length))
                    }
                }
            }
        } while sent < 0 && errno == EINTR
        guard sent == text.count else {
            let reason = sent < 0 ? String(cString: strerror(errno)) : "sent \(sent) of \(text.count) bytes"
            throw ServiceError(.socket, "cannot notify systemd at \(displayName): \(reason); if systemd restarted, `systemctl status` shows the unit's state")
        }
    }

    /// Sends `notification`; logs a failure at warning instead of throwing.
    /// Returns whether it was sent. A failed ping or status is dropped (the caller sends a newer one); a
    /// failed one-shot notification is kept and sent again by `sendPending`, after those failed before it.
    @discardableResult
    package func notify(_ notification: ServiceNotification) -> Bool {
        guard notification.isOneShot else { return attempt(notification) }
        return pending.withLock { queued in
            queued.append(notification)
            return flush(&queued, warnOnce: true)
        }
    }

    /// Sends the one-shot notifications that failed before, oldest first, stopping at the first that
    /// fails again. Returns whether none is left.
    @discardableResult
    package func sendPending() -> Bool {
        pending.withLock { queued in flush(&queued, warnOnce: false) }
    }

    private func flush(_ queued: inout [ServiceNotification], warnOnce: Bool) -> Bool {
        while let first = queued.first {
            guard attempt(first, warn: warnOnce) else {
                if queued.count > Self.pendingLimit {
                    logger.warning("systemd notification dropped: too many undelivered", metadata: ["ferry.service.notification": "\(queued[0].encoded)"])
                    queued.removeFirst()
                }
                return false
            }
            queued.removeFirst()
        }
        return true
    }

    private func attempt(_ notification: ServiceNotification, warn: Bool = true) -> Bool {
        do {
            try send(notification)
            return true
        } catch {
            if warn {
                logger.warning("systemd notification failed", metadata: [
                    "ferry.service.error": "\(error.message)", "ferry.service.code": "\(error.code)",
                ])
            }
            return false
        }
    }

    private var displayName: String {
        address.isAbstract ? "@" + String(decoding: address.pathBytes.dropFirst(), as: UTF8.self)
                           : String(decoding: address.pathBytes, as: UTF8.self)
    }
}

/// Reads a variable of this process's environment (`getenv`); the default source of the notifier's
/// and the watchdog's settings.
package func processEnvironment(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}
