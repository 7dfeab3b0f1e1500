package import FerryPipeline
import FerryQueue
import FerryWire

extension Intake {
    /// The store of the syslog and RELP servers: each batch goes through this intake (stamped with
    /// `host`/`fields`, and `@timestamp` = the read time for messages without a time of their own) in one
    /// append, **waiting while the queue is full** (`appendWaiting`). Meanwhile the connection reads at most
    /// one more batch and then stops reading, so a full queue pauses TCP senders and leaves RELP messages
    /// unanswered until they are stored.
    ///
    /// Throws `SyslogStoreStopped` when Ferry stops before the batch is stored: nothing of it is stored, a
    /// RELP client gets no answer and sends it again after the restart.
    package func syslogStore() -> SyslogStore {
        let timestampMask = stamp.timestampMask
        // A configured field named like a syslog field (`fields: {appname: x}`) must not be written twice:
        // such stamps look the keys up in each event; the others know that only `@timestamp` can be present.
        let syslogFields: Set<String> = ["hostname", "appname", "procid", "msgid", "facility", "severity", "message", "structured_data", "source_ip"]
        let lookUp = stamp.fields.contains { syslogFields.contains($0.key) }
        return { [self] events in
            var batch = self.batch(readAt: events.readAt)
            batch.sourceBytes = events.receivedBytes
            events.forEach { event, hasTimestamp in
                if lookUp {
                    batch.add(object: event)
                } else {
                    batch.add(object: event, present: hasTimestamp ? timestampMask : 0)
                }
            }
            guard await self.appendWaiting(batch) != nil else { throw SyslogStoreStopped() }
        }
    }
}

/// Ferry stopped before a batch of syslog messages was stored; nothing of it is stored.
package struct SyslogStoreStopped: Error, Hashable, Sendable, CustomStringConvertible {
    package init() {}
    package var description: String { "Ferry is stopping: the messages were not stored (a RELP client sends them again)" }
}
