/// An error of the file input: a bad setting, a stored position that cannot be read, a failed system call.
///
/// A struct with an opaque code, so that new codes do not break callers. `message` says what happened and
/// what to do; `code.shortDescription` is stable and safe as a metric label.
package struct FileInputError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable identifier.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable {
            case invalidPattern = "invalid_pattern"
            case invalidSetting = "invalid_setting"
            case damagedPosition = "damaged_position"
            case unknownPositionVersion = "unknown_position_version"
            case system = "system"
        }

        let base: Base

        /// The multiline start pattern does not compile.
        package static let invalidPattern = Code(base: .invalidPattern)
        /// A setting is out of range (an empty `paths`, a zero `max_line_bytes`, a malformed glob).
        package static let invalidSetting = Code(base: .invalidSetting)
        /// A stored position is shorter than its fields, or its checksum does not match: it is damaged.
        package static let damagedPosition = Code(base: .damagedPosition)
        /// A stored position was written by a newer Ferry, in a format this one does not read.
        package static let unknownPositionVersion = Code(base: .unknownPositionVersion)
        /// A system call failed (inotify, a thread); `message` names it and its errno.
        package static let system = Code(base: .system)

        /// A short, stable name, safe as a metric label.
        package var shortDescription: String { base.rawValue }
        package var description: String { base.rawValue }
    }

    package let code: Code
    /// What happened and what to do, for a human.
    package let message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
