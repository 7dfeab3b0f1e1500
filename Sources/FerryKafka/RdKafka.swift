package import CRdKafka
package import FerryPipeline
import FoundationEssentials
import Logging
import NIOCore
import Synchronization
import Dispatch
import FerryQueue

/// Small helpers over librdkafka's C API.
package enum RdKafka {
    static let errorBufferSize = 512

    /// A configuration object with `properties` set, or an error naming the property librdkafka refused.
    package static func makeConfiguration(_ properties: [(String, String)], role: String) throws(ConfigurationError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var message = [CChar](repeating: 0, count: errorBufferSize)
        for (key, value) in properties where rd_kafka_conf_set(conf, key, value, &message, errorBufferSize) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            let shown = isSecret(key) ? "<redacted>" : value
            throw ConfigurationError("kafka \(role): librdkafka refuses \(key)=\(shown): \(string(message)); see librdkafka's CONFIGURATION.md for accepted values")
        }
        return conf
    }

    /// Makes a client from `conf` (which it takes over), or an error saying why not.
    package static func makeClient(_ type: rd_kafka_type_t, _ conf: OpaquePointer, role: String) throws(ConfigurationError) -> OpaquePointer {
        var message = [CChar](repeating: 0, count: errorBufferSize)
        guard let handle = rd_kafka_new(type, conf, &message, errorBufferSize) else {
            rd_kafka_conf_destroy(conf)  // only a successful rd_kafka_new takes the configuration
            throw ConfigurationError("kafka \(role): cannot make the client: \(string(message)); check the kafka settings")
        }
        return handle
    }

    /// A client of Ferry's own: `properties` set, `context` reachable from librdkafka's callbacks, its
    /// errors and log lines into swift-log, and whatever else `configure` sets on the configuration.
    static func makeClient(_ type: rd_kafka_type_t, properties: [(String, String)], role: String, context: ClientContext,
                           configure: (OpaquePointer) -> Void = { _ in }) throws(ConfigurationError) -> OpaquePointer {
        let conf = try makeConfiguration(properties, role: role)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_error_cb(conf, errorCallback)
        rd_kafka_conf_set_log_cb(conf, logCallback)
        configure(conf)
        return try makeClient(type, conf, role: role)
    }

    static func isSecret(_ key: String) -> Bool {
        let lower = key.lowercased()
        return lower.contains("password") || lower.contains("secret") || lower.contains("key.pem") || lower.hasSuffix(".jaas.config")
    }

    package static func string(_ buffer: [CChar]) -> String {
        buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    package static func describe(_ error: rd_kafka_resp_err_t) -> String {
        "\(String(cString: rd_kafka_err2name(error))): \(String(cString: rd_kafka_err2str(error)))"
    }

    /// Errors that concern one message and will not change on a retry: its record goes to `dead`.
    /// Everything else (brokers down, leader changes, timeouts, authorization being fixed) is retried.
    static func isPermanent(_ error: rd_kafka_resp_err_t) -> Bool {
        switch error {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
             RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_RECORD,
             RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR__INVALID_ARG:
            return true
        default:
            return false
        }
    }

    /// librdkafka's log lines, into swift-log. Its syslog levels: 0–3 error, 4 warning, 5 notice, 6 info, 7 debug.
    static let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { handle, level, facility, text in
        guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
        let logger = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue().logger
        let line = text.map { String(cString: $0) } ?? ""
        let metadata: Logger.Metadata = ["kafka.facility": "\(facility.map { String(cString: $0) } ?? "")"]
        switch level {
        case ...3: logger.error("librdkafka: \(line)", metadata: metadata)
        case 4: logger.warning("librdkafka: \(line)", metadata: metadata)
        case 5, 6: logger.info("librdkafka: \(line)", metadata: metadata)
        default: logger.debug("librdkafka: \(line)", metadata: metadata)
        }
    }

    /// Client-wide errors (all brokers down, authentication failed, a fatal idempotence error).
    static let errorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { handle, code, reason, opaque in
        guard let handle, let opaque else { return }
        let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
        let error = rd_kafka_resp_err_t(code)
        let text = reason.map { String(cString: $0) } ?? ""
        if error == RD_KAFKA_RESP_ERR__FATAL {
            var message = [CChar](repeating: 0, count: errorBufferSize)
            let underlying = rd_kafka_fatal_error(handle, &message, errorBufferSize)
            context.fatal.withLock { $0 = "\(describe(underlying)): \(string(message))" }
            context.logger.critical("kafka client failed for good", metadata: ["kafka.error": "\(string(message))"])
        } else {
            context.logger.warning("kafka: \(text)", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2name(error)))"])
        }
    }
}

/// What librdkafka's callbacks reach through the client's opaque pointer. Outlives the client.
final class ClientContext: Sendable {
    let logger: Logger
    /// Set once librdkafka reports a fatal error: the client cannot go on.
    let fatal = Mutex<String?>(nil)
    /// Offset commits that failed (consumer only); their messages are read again.
    let commitFailures = Atomic<Int>(0)
    /// Delivery trackers of the batches in flight, by id (producer only).
    let trackers = Mutex<[UInt32: DeliveryTracker]>([:])
    private let nextTracker = Atomic<UInt32>(1)

    init(logger: Logger) { self.logger = logger }

    func register(_ tracker: DeliveryTracker) -> UInt32 {
        var id = nextTracker.wrappingAdd(1, ordering: .relaxed).oldValue
        if id == 0 { id = nextTracker.wrappingAdd(1, ordering: .relaxed).oldValue }
        trackers.withLock { $0[id] = tracker }
        return id
    }

    func delivered(tag: UInt, error: rd_kafka_resp_err_t) {
        let id = UInt32(truncatingIfNeeded: tag >> 32)
        guard let tracker = trackers.withLock({ $0[id] }) else { return }
        if tracker.complete(index: Int(tag & 0xFFFF_FFFF), error: error) {
            trackers.withLock { _ = $0.removeValue(forKey: id) }
        }
    }
}

/// Waits for the delivery reports of one set of produced messages.
final class DeliveryTracker: Sendable {
    struct Failure: Sendable {
        let index: Int
        let error: rd_kafka_resp_err_t
    }

    private let state: Mutex<(remaining: Int, failures: [Failure], waiter: CheckedContinuation<[Failure], Never>?)>

    init(count: Int) { state = Mutex((count, [], nil)) }

    /// Records one report; true when it was the last.
    func complete(index: Int, error: rd_kafka_resp_err_t) -> Bool {
        let (done, waiter, failures) = state.withLock { state -> (Bool, CheckedContinuation<[Failure], Never>?, [Failure]) in
            if error != RD_KAFKA_RESP_ERR_NO_ERROR { state.failures.append(Failure(index: index, error: error)) }
            state.remaining -= 1
            guard state.remaining == 0 else { return (false, nil, []) }
            defer { state.waiter = nil }
            return (true, state.waiter, state.failures)
        }
        waiter?.resume(returning: failures)
        return done
    }

    /// The failures, once every message has its report.
    func wait() async -> [Failure] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [Failure]? in
                if state.remaining == 0 { return state.failures }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// One librdkafka producer for one topic, with a thread that serves its delivery reports.
final class KafkaProducer: @unchecked Sendable {  // the handles are thread-safe per librdkafka's documentation
    let context: ClientContext
    private let handle: OpaquePointer
    private let topic: OpaquePointer
    private let running = Atomic<Bool>(true)
    private let pollerDone = DispatchSemaphore(value: 0)

    /// A message to produce: the event and its key, both slices of the record's decompressed payload.
    struct Message: Sendable {
        var value: ByteBuffer
        var key: ByteBuffer?
    }

    init(configuration: KafkaOutputConfiguration, logger: Logger) throws(ConfigurationError) {
        context = ClientContext(logger: logger)
        handle = try RdKafka.makeClient(RD_KAFKA_PRODUCER, properties: configuration.librdkafkaProperties(), role: "output", context: context) {
            rd_kafka_conf_set_dr_msg_cb($0, Self.deliveryCallback)
        }
        guard let topic = rd_kafka_topic_new(handle, configuration.topic, nil) else {
            let error = rd_kafka_last_error()
            rd_kafka_destroy(handle)
            throw ConfigurationError("kafka output: topic \(configuration.topic) is not usable: \(RdKafka.describe(error))")
        }
        self.topic = topic
        // The thread holds the producer until `close` stops it.
        OSThread.start(name: "ferry-kafka") { [self] in
            while running.load(ordering: .acquiring) { rd_kafka_poll(handle, 100) }
            pollerDone.signal()
        }
    }

    private static let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, opaque in
        guard let message, let opaque else { return }
        let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
        context.delivered(tag: UInt(bitPattern: message.pointee._private), error: message.pointee.err)
    }

    /// Produces `messages` and returns once librdkafka reported on each: the ones that failed, by index.
    func produce(_ messages: [Message]) async -> [DeliveryTracker.Failure] {
        precondition(messages.count < Int(UInt32.max))
        let tracker = DeliveryTracker(count: messages.count)
        let id = context.register(tracker)
        let partition = ferry_rd_kafka_partition_ua()
        for (index, message) in messages.enumerated() {
            let tag = UnsafeMutableRawPointer(bitPattern: UInt(id) << 32 | UInt(index))
            while true {
                let status = message.value.withUnsafeReadableBytes { value in
                    withKey(message.key) { key, keyLength in
                        rd_kafka_produce(topic, partition, RD_KAFKA_MSG_F_COPY, UnsafeMutableRawPointer(mutating: value.baseAddress),
                                         value.count, key, keyLength, tag)
                    }
                }
                if status == 0 { break }
                let error = rd_kafka_last_error()  // thread-local: read before any suspension point
                if error == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    // librdkafka's buffer is full: its sends have to make room first.
                    try? await Task.sleep(for: .milliseconds(5))
                    continue
                }
                if tracker.complete(index: index, error: error) { context.trackers.withLock { _ = $0.removeValue(forKey: id) } }
                break
            }
        }
        return await tracker.wait()
    }

    private func withKey<R>(_ key: ByteBuffer?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
        guard let key else { return body(nil, 0) }
        return key.withUnsafeReadableBytes { body($0.baseAddress, $0.count) }
    }

    /// Fails every message not delivered yet (reports come back as purged), so that waiting ends.
    func purge() {
        rd_kafka_purge(handle, 0x1 | 0x2)  // RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT
    }

    /// Waits up to `timeout` for outstanding messages, then stops the poller and frees the client.
    func close(timeout: Duration = .seconds(5)) {
        _ = rd_kafka_flush(handle, Int32(clamping: timeout.inMilliseconds))
        running.store(false, ordering: .releasing)
        pollerDone.wait()
        rd_kafka_topic_destroy(topic)
        rd_kafka_destroy(handle)
    }
}

/// A message read by the consumer: its value, and where it came from (for the offset commit).
struct ConsumedMessage: Sendable {
    var value: [UInt8]?
    var topic: String
    var partition: Int32
    var offset: Int64
}

/// One librdkafka consumer group member, subscribed to the input's topics. Offsets are committed only
/// by `commit`, never automatically.
final class KafkaConsumer: @unchecked Sendable {  // the handles are thread-safe per librdkafka's documentation
    let context: ClientContext
    private let handle: OpaquePointer
    private let queue: OpaquePointer
    private let closed = Atomic<Bool>(false)

    init(configuration: KafkaInputConfiguration, logger: Logger) throws(ConfigurationError) {
        context = ClientContext(logger: logger)
        handle = try RdKafka.makeClient(RD_KAFKA_CONSUMER, properties: configuration.librdkafkaProperties(), role: "input", context: context) {
            rd_kafka_conf_set_offset_commit_cb($0, Self.commitCallback)
        }
        rd_kafka_poll_set_consumer(handle)
        let list = rd_kafka_topic_partition_list_new(Int32(configuration.topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in configuration.topics { rd_kafka_topic_partition_list_add(list, topic, ferry_rd_kafka_partition_ua()) }
        let error = rd_kafka_subscribe(handle, list)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(handle)
            throw ConfigurationError("kafka input: cannot subscribe to \(configuration.topics.joined(separator: ", ")): \(RdKafka.describe(error))")
        }
        queue = rd_kafka_queue_get_consumer(handle)
    }

    /// Blocks up to `timeout` for the first messages, then returns what is there, at most `maxMessages`.
    /// Errors the consumer reports (a broker down, an unknown topic) are logged; librdkafka retries them.
    func poll(maxMessages: Int, timeout: Duration) -> [ConsumedMessage] {
        var raw = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: maxMessages)
        let count = rd_kafka_consume_batch_queue(queue, Int32(clamping: timeout.inMilliseconds), &raw, maxMessages)
        guard count > 0 else { return [] }
        var result: [ConsumedMessage] = []
        result.reserveCapacity(count)
        for message in raw.prefix(count) {
            guard let message else { continue }
            defer { rd_kafka_message_destroy(message) }
            let m = message.pointee
            guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    context.logger.warning("kafka input: consumer error; librdkafka retries", metadata: ["kafka.error": "\(RdKafka.describe(m.err))"])
                }
                continue
            }
            let value = m.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.len)) }
            result.append(ConsumedMessage(value: value, topic: m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "",
                                          partition: m.partition, offset: m.offset))
        }
        return result
    }

    /// The outcome of an asynchronous commit (served by the consumer's poll).
    private static let commitCallback: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { _, error, _, opaque in
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR, error != RD_KAFKA_RESP_ERR__NO_OFFSET, let opaque else { return }
        let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
        context.commitFailures.add(1, ordering: .relaxed)
        context.logger.warning("kafka offsets not committed; those messages will be read again", metadata: ["kafka.error": "\(RdKafka.describe(error))"])
    }

    /// Commits the position after each partition's last message in `messages`: synchronously (returns the
    /// outcome), or in the background (returns at once; a failure is logged and counted).
    func commit(after messages: [ConsumedMessage], async: Bool) -> rd_kafka_resp_err_t {
        var next: [String: [Int32: Int64]] = [:]
        for message in messages { next[message.topic, default: [:]][message.partition] = max(next[message.topic]?[message.partition] ?? 0, message.offset + 1) }
        let list = rd_kafka_topic_partition_list_new(Int32(messages.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (topic, partitions) in next {
            for (partition, offset) in partitions { rd_kafka_topic_partition_list_add(list, topic, partition)!.pointee.offset = offset }
        }
        return rd_kafka_commit(handle, list, async ? 1 : 0)
    }

    /// Messages in the assigned partitions not read yet (from cached watermarks); nil before an assignment.
    func lag() -> Int64? {
        var assignment: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR, let list = assignment else { return nil }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard list.pointee.cnt > 0 else { return nil }
        _ = rd_kafka_position(handle, list)
        var total: Int64 = 0
        for i in 0..<Int(list.pointee.cnt) {
            let entry = list.pointee.elems[i]
            var low: Int64 = 0
            var high: Int64 = 0
            guard rd_kafka_get_watermark_offsets(handle, entry.topic, entry.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  high >= 0 else { continue }
            total += high - max(entry.offset, low)
        }
        return max(total, 0)
    }

    /// Leaves the group (without committing anything) and frees the client.
    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        rd_kafka_queue_destroy(queue)
        _ = rd_kafka_consumer_close(handle)
        rd_kafka_destroy(handle)
    }
}
