package import FerryWire
#if canImport(Glibc)
import Glibc
#endif

/// How an input stamps its events, as configured (`input.<kind>.add_timestamp`, `input.<kind>.fields`).
package struct StampSettings: Sendable, Hashable {
    /// Add `@timestamp` (the read time) to events that have none. Default true; false stores events
    /// exactly as received.
    package var addTimestamp: Bool
    /// Constant fields added to every event (a key the event has is left as it is).
    package var fields: [EventStamp.Field]

    package init(addTimestamp: Bool = true, fields: [EventStamp.Field] = []) {
        self.addTimestamp = addTimestamp
        self.fields = fields
    }

    /// The stamp of an input; `host` is the hostname for inputs that read events made on this host.
    package func stamp(host: String?) -> EventStamp {
        EventStamp(addTimestamp: addTimestamp, host: host, fields: fields)
    }
}

/// This host's name (`gethostname`), for the `host` of events read here; "localhost" if it has none.
package func currentHostname() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
}
