/// Where the syslog and RELP servers put what they receive: the one hook the input seam plugs into.
///
/// Called with a batch of parsed events (never empty), on no particular executor. It must return only after
/// the batch is durably committed (the queue's fsync), or throw when nothing of it is stored. Waiting inside
/// it is the backpressure: while a call runs, its connection (or UDP socket) reads at most one more batch
/// and then stops reading, so a full queue pauses senders instead of filling memory.
///
/// - TCP and UDP syslog: no acknowledgement exists; a throwing call closes the TCP connection (the batch is
///   lost, like anything in the socket buffers of a plain syslog sender) and is counted.
/// - RELP: the `rsp 200 OK` of each message in the batch is sent after the call returns; a throwing call
///   answers nothing and ends the session, and the client sends the messages again.
///
/// Batches of concurrent connections are separate calls at the same time: the queue's group commit joins them.
package typealias SyslogStore = @Sendable (_ batch: SyslogEventBatch) async throws -> Void
