import CoreMetrics
import Synchronization

/// The ingest's counters and timers, through swift-metrics (the agent wires a Prometheus backend).
///
/// - `ferry_ingest_requests_total{status}`: answered requests by status code.
/// - `ferry_ingest_events_total`, `ferry_ingest_bytes_total`: events stored and body bytes received for them.
/// - `ferry_ingest_rejections_total{reason}`: refused requests by `IngestError.reason`.
/// - `ferry_ingest_duplicates_total`: requests answered 200 as an exact retry of a stored `Ferry-Batch`.
/// - `ferry_ingest_commit_seconds`: time from a complete body to its durable commit.
struct IngestMetrics: Sendable {
    let events = Counter(label: "ferry_ingest_events_total")
    let bytes = Counter(label: "ferry_ingest_bytes_total")
    let duplicates = Counter(label: "ferry_ingest_duplicates_total")
    let commit = Timer(label: "ferry_ingest_commit_seconds")

    func request(status: Int) {
        Counter(label: "ferry_ingest_requests_total", dimensions: [("status", String(status))]).increment()
    }

    func rejected(_ reason: String) {
        Counter(label: "ferry_ingest_rejections_total", dimensions: [("reason", reason)]).increment()
    }
}
