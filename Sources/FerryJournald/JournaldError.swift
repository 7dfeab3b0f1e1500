/// An error of the journald input. A struct with an opaque code (new codes do not break callers); `message`
/// says what happened and what to do. Messages do not name configuration keys: the agent maps them.
package struct JournaldError: Error, Hashable, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable {
            case invalidConfiguration = "invalid_configuration", permissionDenied = "permission_denied"
            case cannotOpen = "cannot_open", unreadablePosition = "unreadable_position", journalFailed = "journal_failed"
        }
        let base: Base

        /// A setting cannot be used (a match that is not `FIELD=value`, an empty unit name, ...).
        package static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// The journal's files exist but this process may not read them: it needs the `systemd-journal`
        /// group (or `adm`), or root.
        package static let permissionDenied = Code(base: .permissionDenied)
        /// The journal cannot be opened: no such directory, no journal on this host, or sd-journal failed.
        package static let cannotOpen = Code(base: .cannotOpen)
        /// The stored position was written by a newer Ferry (unknown format version).
        package static let unreadablePosition = Code(base: .unreadablePosition)
        /// sd-journal failed while reading (a damaged file, out of memory).
        package static let journalFailed = Code(base: .journalFailed)

        /// A short, stable name, safe as a metric label.
        package var shortDescription: String { base.rawValue }
        package var description: String { base.rawValue }
    }

    package let code: Code
    /// What happened and what to do.
    package let message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
