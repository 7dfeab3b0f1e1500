public import FerryWire

extension QueueStats {
    /// The stats as one JSON object with stable snake_case field names: what the agent's `/queue` endpoint
    /// and `ferry-tools stats --json` print. Fields are only ever added, never renamed.
    /// `outputState` adds fields to each output's object (the agent's run state of it).
    public func json(agentID: String, path: String, now: Int64 = RecordTime.now(),
                     outputState: (String) -> [(String, String)] = { _ in [] }) -> String {
        var fields: [(String, String)] = [
            ("path", Self.string(path)),
            ("agent_id", Self.string(agentID)),
            ("format_version", "\(Queue.formatVersion)"),
            ("records", "\(records)"),
            ("events", "\(events)"),
            ("bytes", "\(bytes)"),
            ("oldest_created_at_ms", oldestCreatedAt.map { "\($0)" } ?? "null"),
            ("oldest_age_seconds", oldestCreatedAt.map { String(Double(max(0, now - $0)) / 1000) } ?? "null"),
            ("first_sequence", firstSequence.map { "\($0)" } ?? "null"),
            ("last_sequence", lastSequence.map { "\($0)" } ?? "null"),
            ("next_sequence", "\(nextSequence)"),
            ("dead_records", "\(deadRecords)"),
            ("dead_events", "\(deadEvents)"),
            ("dead_bytes", "\(deadBytes)"),
        ]
        fields += [
            ("appended_records", "\(appendedRecords)"),
            ("appended_events", "\(appendedEvents)"),
            ("delivered_records", "\(deliveredRecords)"),
            ("delivered_events", "\(deliveredEvents)"),
            ("dropped_records", "\(droppedRecords)"),
            ("dropped_events", "\(droppedEvents)"),
            ("dead_records_total", "\(deadRecordsTotal)"),
            ("dead_events_total", "\(deadEventsTotal)"),
            ("requeued_events", "\(requeuedEvents)"),
            ("purged_events", "\(purgedEvents)"),
            ("duplicate_batches", "\(duplicateBatches)"),
            ("max_bytes", "\(maxBytes)"),
            ("map_size", "\(mapSize)"),
            ("map_used_bytes", "\(mapUsedBytes)"),
        ]
        let outputObjects = outputs.map { output -> String in
            var fields: [(String, String)] = [
                ("name", Self.string(output.name)),
                ("pending_events", "\(output.pendingEvents)"),
                ("lag_bytes", "\(output.pendingBytes)"),
                ("lag_seconds", output.oldestPendingCreatedAt.map { String(Double(max(0, now - $0)) / 1000) } ?? "0"),
                ("delivered_records", "\(output.deliveredRecords)"),
                ("delivered_events", "\(output.deliveredEvents)"),
                ("dead_records", "\(output.deadRecords)"),
                ("dead_records_total", "\(output.deadRecordsTotal)"),
                ("dropped_lagging_events", "\(output.droppedLaggingEvents)"),
                ("dropped_full_events", "\(output.droppedFullEvents)"),
                ("when_lagging", Self.string(output.whenLagging.rawValue)),
            ]
            fields += outputState(output.name)
            return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        fields.append(("outputs", "[" + outputObjects.joined(separator: ",") + "]"))
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    public static func string(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case let c where c.value < 0x20: out += "\\u00" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
