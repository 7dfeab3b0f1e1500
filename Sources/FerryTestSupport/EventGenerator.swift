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

/// Access-log-like events of about 140 bytes with the variety of real ones (addresses, paths, sizes,
/// durations, times), so that gzip shrinks them about as much as real logs rather than 100×.
/// Deterministic for a given seed.
public func realisticEventLines(count: Int, seed: UInt64 = 42) -> [[UInt8]] {
    var state = seed | 1
    func next() -> UInt64 {  // xorshift64*: fast, deterministic, good enough for test data
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
    let methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
    let paths = ["/api/v1/orders", "/api/v1/users", "/health", "/metrics", "/static/app.js", "/api/v2/telemetry", "/login"]
    let statuses = [200, 200, 200, 200, 201, 204, 301, 400, 404, 500, 503]
    return (0..<count).map { i in
        let ms = 1_795_000_000_000 + Int(next() % 86_400_000)
        let ip = "10.\(next() % 256).\(next() % 256).\(next() % 256)"
        let line = #"{"ts":\#(ms),"host":"edge-\#(next() % 64)","ip":"\#(ip)","m":"\#(methods[Int(next() % 6)])","p":"\#(paths[Int(next() % 7)])/\#(next() % 100_000)","s":\#(statuses[Int(next() % 11)]),"b":\#(next() % 65_536),"d":\#(Double(next() % 100_000) / 100),"seq":\#(i)}"#
        return Array(line.utf8)
    }
}

/// A small deterministic random source (SplitMix64), so that a failing seed can be replayed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` random hex digits: text that compresses about 2:1, for events that must not compress away.
    public mutating func hex(_ count: Int) -> String {
        let digits = Array("0123456789abcdef")
        return String((0..<count).map { _ in digits[Int(next() & 15)] })
    }
}
