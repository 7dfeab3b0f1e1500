/// An error of the service integration (systemd notify). A struct with an opaque code, so new codes do
/// not break callers; `message` says what happened and what to do.
package struct ServiceError: Error, Hashable, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable {
            case invalidEnvironment = "invalid_environment", socket
        }
        let base: Base

        /// `NOTIFY_SOCKET` or `WATCHDOG_USEC` holds something Ferry cannot use (a relative path, a vsock
        /// address, a path longer than a socket address holds, a non-number).
        package static let invalidEnvironment = Code(base: .invalidEnvironment)
        /// The notification socket could not be made or written to.
        package static let socket = Code(base: .socket)

        /// A short, stable name, safe as a metric label.
        package var description: String { base.rawValue }
    }

    package let code: Code
    package let message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
