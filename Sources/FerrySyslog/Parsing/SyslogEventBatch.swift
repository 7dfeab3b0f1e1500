import FerryWire

/// Parsed syslog events on their way to the store: their JSON objects back to back in one buffer (one
/// allocation per batch, not per event), with where each ends and whether it has its own `@timestamp`.
///
/// Built on a connection's event loop, handed to the store as a value.
package struct SyslogEventBatch: Sendable {
    /// The events' JSON objects, back to back, with nothing between them.
    package private(set) var bytes: [UInt8] = []
    /// The end offset in `bytes` of each event.
    package private(set) var ends: [Int] = []
    /// Per event: it has its own `@timestamp` (otherwise the seam stamps `readAt`).
    package private(set) var timestamped: [Bool] = []
    /// Bytes of the messages as received (framing excluded): `ferry_input_*_bytes_total`.
    package private(set) var receivedBytes = 0
    /// Milliseconds since the epoch at which the first event of the batch was read.
    package private(set) var readAt: Int64 = 0

    package init() {}

    package var count: Int { ends.count }
    package var isEmpty: Bool { ends.isEmpty }

    /// Parses `message` with `parser` and appends its event; returns what the parser found (nil: the message
    /// was empty and nothing was added).
    @discardableResult
    package mutating func append(
        _ message: UnsafeRawBufferPointer, parser: inout SyslogParser, sourceIP: [UInt8]?, now: Int64
    ) -> SyslogParseResult? {
        if ends.isEmpty {
            readAt = now
            if bytes.capacity < 4096 { bytes.reserveCapacity(4096) }
        }
        guard let result = parser.parse(message, sourceIP: sourceIP, now: now, into: &bytes) else { return nil }
        ends.append(bytes.count)
        timestamped.append(result.hasTimestamp)
        receivedBytes += message.count
        return result
    }

    /// The JSON object of event `index`.
    package func withEvent<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = index == 0 ? 0 : ends[index - 1]
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<ends[index]])) }
    }

    /// Calls `body` with each event's JSON object and whether it has its own `@timestamp`, in order.
    package func forEach(_ body: (_ event: UnsafeRawBufferPointer, _ hasTimestamp: Bool) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var start = 0
            for (index, end) in ends.enumerated() {
                try body(UnsafeRawBufferPointer(rebasing: all[start..<end]), timestamped[index])
                start = end
            }
        }
    }
}
