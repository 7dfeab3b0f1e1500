/// One change to the queue's `positions` table: `value` nil deletes `key`. Shaped like the seam's
/// `InputPosition`, so that wiring the input to the queue is a field-for-field copy.
package struct FilePositionUpdate: Hashable, Sendable {
    package var key: [UInt8]
    package var value: [UInt8]?

    package init(key: [UInt8], value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// Where the file input's events go: in the agent, the seam's `Intake.appendWaiting`; in tests, memory.
///
/// The contract the input relies on: `events` and `positions` are stored in one transaction, or neither is;
/// while the queue is full or failing the call waits (that wait is the backpressure: the input reads nothing
/// meanwhile); it returns false only when Ferry stops first, and then nothing was stored. `events` may be
/// empty while `positions` is not (blank lines, a skipped tail, a file gone).
package protocol FileEventSink: Sendable {
    func appendWaiting(_ events: FileEvents, positions: [FilePositionUpdate]) async -> Bool
}
