package import FerryWire

/// The events of one append, in one contiguous buffer: each one a JSON object on one line, without newline.
///
/// What the input hands to the seam. `.object` events are JSON objects read from a file (format `json`):
/// their keys are the writer's, so the seam's stamp must look for `@timestamp` and `host` before adding them.
/// `.built` events were made by the input (`{"message":...,"file":...}`): the stamp knows their keys.
package struct FileEvents: Sendable {
    /// Who made an event, which tells the stamp whether it must look for the keys it adds.
    package enum Kind: UInt8, Sendable {
        case object
        case built
    }

    package private(set) var bytes: [UInt8] = []
    /// Bytes read from files for these events (the seam's `ferry_input_bytes_total`), newlines and skipped
    /// bytes included.
    package var sourceBytes = 0
    private var ends: [Int] = []
    private var kinds: [Kind] = []

    package init() {}

    /// Events held.
    package var count: Int { ends.count }
    package var isEmpty: Bool { ends.isEmpty }

    /// The bytes of event `index` and its kind.
    package subscript(index: Int) -> (bytes: ArraySlice<UInt8>, kind: Kind) {
        let start = index == 0 ? 0 : ends[index - 1]
        return (bytes[start..<ends[index]], kinds[index])
    }

    /// Calls `body` with each event's bytes (valid only during the call) and kind, in order.
    package func forEach(_ body: (UnsafeRawBufferPointer, Kind) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var start = 0
            for (end, kind) in zip(ends, kinds) {
                try body(UnsafeRawBufferPointer(rebasing: all[start..<end]), kind)
                start = end
            }
        }
    }

    /// Adds an event built by `body`, which appends its bytes to the buffer it is given.
    package mutating func add(_ kind: Kind, _ body: (inout [UInt8]) -> Void) {
        body(&bytes)
        ends.append(bytes.count)
        kinds.append(kind)
    }

    /// Removes every event, keeping the buffer's capacity.
    package mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        kinds.removeAll(keepingCapacity: true)
        sourceBytes = 0
    }

    /// The events as NDJSON lines packed into records (benchmarks and tests; the agent goes through the seam).
    package func batch(maxRecordBytes: Int = RecordBuilder.defaultMaxRecordBytes) -> EventBatch {
        var builder = RecordBuilder(maxRecordBytes: maxRecordBytes)
        forEach { event, _ in builder.append(line: event) }
        return builder.finish()
    }
}
