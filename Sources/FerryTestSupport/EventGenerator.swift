public import FerryWire

/// Realistic JSON events of about 140 bytes, each with a unique `id`, as edge hosts send them.
public struct EventGenerator: Sendable {
    public let prefix: String
    private static let hosts = ["edge-01", "edge-02", "gw-lisbon", "gw-oslo", "rtu-7"]
    private static let levels = ["info", "warn", "error", "debug"]

    public init(prefix: String) {
        self.prefix = prefix
    }

    /// The id of event `index` of batch `batch`.
    public func id(batch: Int, index: Int) -> String { "\(prefix)-b\(batch)-e\(index)" }

    /// One event line (no newline). `count` is the size of its batch, so that a reader can check that
    /// batches are stored whole.
    public func line(batch: Int, index: Int, count: Int) -> String {
        let host = Self.hosts[(batch &+ index) % Self.hosts.count]
        let level = Self.levels[index % Self.levels.count]
        return #"{"id":"\#(id(batch: batch, index: index))","n":\#(count),"@timestamp":"2026-11-23T10:00:00.000Z","host":"\#(host)","level":"\#(level)","message":"link state changed"}"#
    }

    /// The lines of a batch of `count` events.
    public func lines(batch: Int, count: Int) -> [String] {
        (0..<count).map { line(batch: batch, index: $0, count: count) }
    }

    /// An encoded batch of `count` events.
    public func batch(_ batch: Int, count: Int, maxRecordBytes: Int = RecordBuilder.defaultMaxRecordBytes) -> EventBatch {
        EventBatch(lines: lines(batch: batch, count: count).map { Array($0.utf8) }, maxRecordBytes: maxRecordBytes)
    }
}

/// Reads the `id` and `n` fields of an event made by `EventGenerator`, without a JSON parser.
public func generatedEventFields(_ line: String) -> (id: String, count: Int)? {
    guard let idStart = line.range(of: #""id":""#)?.upperBound,
          let idEnd = line[idStart...].firstIndex(of: "\""),
          let nStart = line.range(of: #""n":"#)?.upperBound,
          let nEnd = line[nStart...].firstIndex(of: ","),
          let n = Int(line[nStart..<nEnd])
    else { return nil }
    return (String(line[idStart..<idEnd]), n)
}
