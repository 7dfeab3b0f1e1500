/// The events made from a run of journal entries: JSON objects back to back in one buffer (one allocation
/// for a whole batch, not one per event), each without a newline.
package struct JournalEvents: Sendable, Hashable {
    /// The events' bytes, back to back.
    package private(set) var bytes: [UInt8] = []
    /// The end offset in `bytes` of each event.
    package private(set) var ends: [Int] = []

    package init() {}

    package var count: Int { ends.count }
    package var isEmpty: Bool { ends.isEmpty }

    /// Event `index`'s bytes.
    package subscript(index: Int) -> ArraySlice<UInt8> {
        bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }

    /// Calls `body` with each event's bytes, in order; valid only during the call.
    package func forEach(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var start = 0
            for end in ends {
                try body(UnsafeRawBufferPointer(rebasing: all[start..<end]))
                start = end
            }
        }
    }

    /// Appends one event, written by `write` at the end of the buffer.
    mutating func append(_ write: (inout [UInt8]) -> Void) {
        write(&bytes)
        ends.append(bytes.count)
    }
}
