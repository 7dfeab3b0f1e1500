/// The journald input's position in the queue's `positions` table: key `journald/<input name>`, value the
/// cursor of the last stored entry, written in the same transaction as the entries up to it.
///
/// Value format, version 1: one byte `0x01`, then the cursor's text as sd-journal gives it (ASCII,
/// `s=…;i=…;b=…;m=…;t=…;x=…`). The version byte lets a later Ferry add fields; an older Ferry refuses a value
/// whose version it does not know rather than guessing a position.
package struct JournalPosition: Sendable, Hashable {
    package static let formatVersion: UInt8 = 1

    /// The key in the queue's `positions` table.
    package let key: [UInt8]
    /// The encoded cursor.
    package let value: [UInt8]

    /// The position of `cursor` for the input named `input`.
    package init(input: String, cursor: String) {
        key = Self.key(input: input)
        value = [Self.formatVersion] + Array(cursor.utf8)
    }

    /// The key of the input named `input`: `journald/<input>`.
    package static func key(input: String) -> [UInt8] { Array("journald/\(input)".utf8) }

    /// The cursor in a stored value. Throws for a value of an unknown version or an empty cursor.
    package static func cursor(from value: [UInt8]) throws(JournaldError) -> String {
        guard let version = value.first else {
            throw JournaldError(.unreadablePosition, "the stored journal position is empty; delete it to start over (start_at applies)")
        }
        guard version == formatVersion else {
            throw JournaldError(.unreadablePosition,
                                "the stored journal position has format version \(version), this Ferry reads version \(formatVersion); run the Ferry that wrote it, or delete the position to start over")
        }
        guard value.count > 1 else {
            throw JournaldError(.unreadablePosition, "the stored journal position holds no cursor; delete it to start over (start_at applies)")
        }
        return String(decoding: value[1...], as: UTF8.self)
    }
}
