/// A configuration Ferry cannot start (or go on) with: the one configuration error of the loader, the
/// inputs and the outputs. The message names the key (with its line, from the loader) and says what to
/// do; `ferry` exits with status 2 on it.
package struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem; opaque, so that kinds can be added without breaking callers.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        package var description: String { name }

        /// A value is refused: unknown key, wrong type, out of range, contradicting another.
        package static let invalid = Code(name: "invalid")
        /// A value is well formed but what it names cannot be used: a file that cannot be read (TLS
        /// material), a directory that cannot be made or written, a broker or topic librdkafka refuses.
        package static let unusable = Code(name: "unusable")
    }

    package let code: Code
    package let message: String

    package init(_ message: String, code: Code = .invalid) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
