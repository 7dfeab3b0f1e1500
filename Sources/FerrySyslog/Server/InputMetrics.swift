package import CoreMetrics

/// The counters of one syslog or RELP listener, through swift-metrics (the agent wires Prometheus). Names
/// start with `ferry_input_syslog_` or `ferry_input_relp_`, labelled `input` (the input's name) and, for
/// syslog, `transport` (`tcp`, `tls`, `udp`). The seam counts the generic events, bytes and pauses.
///
/// - `…_messages_total`, `…_bytes_total`: messages stored and their bytes as received (framing excluded).
/// - `…_parse_failures_total{kind}`: messages stored as raw text (`SyslogParseFailure`), and `invalid_utf8`
///   for messages whose invalid UTF-8 was replaced.
/// - `…_connections_total`: connections accepted; `…_connections`: open now.
/// - `…_frames_refused_total{reason}`: malformed frames (each closed its connection), and
///   `connection_limit` for connections closed because `max_connections` were open.
/// - `…_store_failures_total`: store calls that failed (the connection was closed).
/// - `ferry_input_syslog_udp_drops_total`: datagrams the kernel dropped because the socket's receive buffer
///   was full (`SO_MEMINFO`'s drop count, the counter `SO_RXQ_OVFL` reports).
package struct InputMetrics: Sendable {
    package let messages: Counter
    package let bytes: Counter
    /// Connections: nil for a UDP socket.
    package let connectionsAccepted: Counter?
    package let connectionsOpen: Meter?
    package let storeFailures: Counter
    /// Kernel drops: only for a UDP socket.
    package let udpDrops: Counter?
    private let parseFailures: [SyslogParseFailure: Counter]
    private let invalidUTF8: Counter
    private let refused: [String: Counter]

    /// - Parameters:
    ///   - prefix: `ferry_input_syslog` or `ferry_input_relp`.
    ///   - dimensions: `input` and, for syslog, `transport`.
    ///   - refusalReasons: the `reason` labels this listener uses.
    ///   - datagrams: a UDP socket (kernel drops, no connections) rather than a TCP listener.
    package init(prefix: String, dimensions: [(String, String)], refusalReasons: [String], datagrams: Bool = false,
                 factory: any MetricsFactory = MetricsSystem.factory) {
        messages = Counter(label: prefix + "_messages_total", dimensions: dimensions, factory: factory)
        bytes = Counter(label: prefix + "_bytes_total", dimensions: dimensions, factory: factory)
        connectionsAccepted = datagrams ? nil : Counter(label: prefix + "_connections_total", dimensions: dimensions, factory: factory)
        connectionsOpen = datagrams ? nil : Meter(label: prefix + "_connections", dimensions: dimensions, factory: factory)
        storeFailures = Counter(label: prefix + "_store_failures_total", dimensions: dimensions, factory: factory)
        udpDrops = datagrams ? Counter(label: prefix + "_udp_drops_total", dimensions: dimensions, factory: factory) : nil
        var failures: [SyslogParseFailure: Counter] = [:]
        for kind in SyslogParseFailure.allCases {
            failures[kind] = Counter(label: prefix + "_parse_failures_total", dimensions: dimensions + [("kind", kind.rawValue)], factory: factory)
        }
        parseFailures = failures
        invalidUTF8 = Counter(label: prefix + "_parse_failures_total", dimensions: dimensions + [("kind", "invalid_utf8")], factory: factory)
        var reasons: [String: Counter] = [:]
        for reason in refusalReasons + (datagrams ? [] : ["connection_limit"]) {
            reasons[reason] = Counter(label: prefix + "_frames_refused_total", dimensions: dimensions + [("reason", reason)], factory: factory)
        }
        refused = reasons
    }

    /// Counts what the parser reported for one message.
    @inline(__always)
    package func parsed(_ result: SyslogParseResult) {
        if let failure = result.failure { parseFailures[failure]?.increment() }
        if result.replacedInvalidUTF8 { invalidUTF8.increment() }
    }

    package func stored(_ batch: SyslogEventBatch) {
        messages.increment(by: batch.count)
        bytes.increment(by: batch.receivedBytes)
    }

    package func refused(_ reason: String) {
        refused[reason]?.increment()
    }
}
