package import FerryPipeline
import FerryQueue
import FerryWire

/// The journald input's sink in the agent: the seam's `Intake`, which stamps the events (`host`, `fields`,
/// `@timestamp` only for an event without one: entries carry their realtime) and appends them with the cursor
/// as one `InputPosition` in **one queue transaction**.
///
/// Keeps `JournaldSink`'s contract through `Intake.appendWaiting`: a full (or failing) queue is retried with
/// the seam's backoff while the input reads nothing; false, with nothing stored, only when Ferry stops.
package struct JournaldIntakeSink: JournaldSink {
    package let intake: Intake

    package init(intake: Intake) {
        self.intake = intake
    }

    package func appendWaiting(_ events: JournalEvents, position: JournalPosition) async -> Bool {
        var batch = intake.batch()
        // The stamp looks the keys up in each event: which of `@timestamp`, `message`, `unit`... an entry has
        // depends on the entry, and a configured field must not repeat one of them.
        events.forEach { batch.add(object: $0) }
        batch.sourceBytes = events.bytes.count
        return await intake.appendWaiting(batch, positions: [InputPosition(key: position.key, value: position.value)]) != nil
    }
}
