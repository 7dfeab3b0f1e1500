public import FerryWire

extension QueueStats {
    /// The stats as one JSON object with stable snake_case field names: what the agent's `/queue` endpoint
    /// and `ferry-tools stats --json` print. Fields are only ever added, never renamed.
    public func json(agentID: String, path: String, now: Int64 = currentTimeMilliseconds()) -> String {
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
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    static func string(_ value: String) -> String {
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
