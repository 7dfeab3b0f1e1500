package import FerryPipeline
import FerryQueue
import FerryWire

/// The file input's sink in the agent: the seam's `Intake`, which stamps the events (`host`, `@timestamp`,
/// `fields`) and appends them with the files' positions in one queue transaction.
///
/// Keeps `FileEventSink`'s contract through `Intake.appendWaiting`: a full (or failing) queue is retried with
/// the seam's backoff while the input reads nothing; false, with nothing stored, only when Ferry stops.
package struct IntakeSink: FileEventSink {
    package let intake: Intake
    /// The stamp's bits for the keys the input writes into the events it builds (`message`, `file`): a
    /// configured field of the same name is then not added a second time.
    private let builtPresent: UInt64

    package init(intake: Intake) {
        self.intake = intake
        let keys = intake.stamp.keys
        builtPresent = keys.mask(of: "message") | keys.mask(of: "file")
    }

    package func appendWaiting(_ events: FileEvents, positions: [FilePositionUpdate]) async -> Bool {
        var batch = intake.batch()
        events.forEach { event, kind in
            switch kind {
            case .built: batch.add(object: event, present: builtPresent)
            // The writer's own object: the stamp looks for its keys (a `host` or `@timestamp` it has is kept).
            case .object: batch.add(object: event)
            }
        }
        batch.sourceBytes = events.sourceBytes
        let stored = positions.map { InputPosition(key: $0.key, value: $0.value) }
        return await intake.appendWaiting(batch, positions: stored) != nil
    }
}
