import CoreMetrics

/// The HTTP ingest's own counters and timers, through swift-metrics (the agent wires a Prometheus
/// backend). Events, bytes and refusals are counted by the input seam (`ferry_input_*{input="http"}`).
///
/// - `ferry_ingest_requests_total{status}`: answered requests by status code.
/// - `ferry_ingest_duplicates_total`: requests answered 200 as an exact retry of a stored `Ferry-Batch`.
/// - `ferry_ingest_commit_seconds`: time from a complete body to its durable commit.
struct IngestMetrics: Sendable {
    let duplicates = Counter(label: "ferry_ingest_duplicates_total")
    let commit = Timer(label: "ferry_ingest_commit_seconds")
    /// The counters of the statuses the ingest answers, made once: making a counter looks it up in the
    /// backend's registry (a lock, the label hashed), a cost every request paid before.
    private let requests: [Int: Counter]

    init() {
        var requests: [Int: Counter] = [:]
        for status in [200, 400, 401, 413, 415, 429, 500, 503] {
            requests[status] = Self.requestCounter(status)
        }
        self.requests = requests
    }

    func request(status: Int) {
        (requests[status] ?? Self.requestCounter(status)).increment()
    }

    private static func requestCounter(_ status: Int) -> Counter {
        Counter(label: "ferry_ingest_requests_total", dimensions: [("status", String(status))])
    }
}
