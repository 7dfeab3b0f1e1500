import CRdKafka
public import FerryQueue
import FerryWire
import Foundation
public import Logging
import Metrics
import NIOPosix
public import ServiceLifecycle

/// The `kafka` input: a consumer group member that reads the topics and appends their messages to the
/// queue, committing the Kafka offsets only after the queue's commit (fsynced). A crash between the two
/// reads those messages again after the restart: duplicates, never a gap.
///
/// Each message value becomes one event: a JSON object is stored as it is (compacted to one line if it
/// spans several); any other value becomes `{"message":"<value>"}` (invalid UTF-8 replaced by U+FFFD and
/// counted); a message without a value (a tombstone) is skipped and counted.
public final class KafkaInput: Service, Sendable {
    private let queue: Queue
    private let configuration: KafkaInputConfiguration
    private let consumer: KafkaConsumer
    private let logger: Logger
    private let afterAppend: (@Sendable () async throws -> Void)?
    private let metrics = Metrics()

    struct Metrics: Sendable {
        let events = Counter(label: "ferry_kafka_input_events_total")
        let wrapped = Counter(label: "ferry_kafka_input_wrapped_total")
        let repaired = Counter(label: "ferry_kafka_input_repaired_total")
        let skipped = Counter(label: "ferry_kafka_input_skipped_total")
        let commitFailures = Counter(label: "ferry_kafka_input_commit_failures_total")
        let lag = Gauge(label: "ferry_kafka_input_lag")
    }

    /// `afterAppend` runs between the queue's commit and the offset commit; tests use it to stop there.
    public init(queue: Queue, configuration: KafkaInputConfiguration, logger: Logger = Logger(label: "ferry.input.kafka"),
                afterAppend: (@Sendable () async throws -> Void)? = nil) throws(KafkaConfigurationError) {
        guard !configuration.connection.brokers.isEmpty else { throw KafkaConfigurationError("input.kafka.brokers is empty; list at least one host:port") }
        guard !configuration.topics.isEmpty else { throw KafkaConfigurationError("input.kafka.topics is empty; name at least one topic to read") }
        self.queue = queue
        self.configuration = configuration
        self.logger = logger
        self.afterAppend = afterAppend
        self.consumer = try KafkaConsumer(configuration: configuration, logger: logger)
    }

    public func run() async throws {
        let pool = NIOThreadPool.singleton
        var lastStored: [ConsumedMessage] = []
        defer {
            // A last synchronous commit of what is stored, so the next start does not read it again.
            if !lastStored.isEmpty { _ = consumer.commit(after: lastStored, async: false) }
            consumer.close()
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if let fatal = consumer.context.fatal.withLock({ $0 }) {
                throw KafkaConfigurationError("kafka input stopped: \(fatal); restart ferry to go on")
            }
            // librdkafka blocks while it waits for messages: that happens on a thread of the pool, never on
            // one of Swift's cooperative threads.
            let messages = try await pool.runIfActive { [consumer, configuration] in
                consumer.poll(maxMessages: configuration.maxEventsPerAppend, timeout: .milliseconds(250))
            }
            guard !messages.isEmpty else { continue }
            let batch = events(of: messages)
            if batch.eventCount > 0 {
                // Not a single message is lost to a full queue: the same messages are appended again until
                // the queue takes them (offsets are not committed meanwhile), or Ferry stops.
                var delay = Duration.milliseconds(100)
                while true {
                    do {
                        _ = try await queue.append(batch)
                        break
                    } catch {
                        if Task.isCancelled || Task.isShuttingDownGracefully { return }  // not committed: read again next start
                        logger.warning("kafka input cannot append to the queue; retrying", metadata: ["ferry.queue.error": "\(error)"])
                        try? await Task.sleep(for: delay)  // backoff before the next attempt
                        delay = min(delay * 2, .seconds(5))
                    }
                }
                metrics.events.increment(by: batch.eventCount)
            }
            try await afterAppend?()
            // The events are stored: their offsets may be committed. In the background, so that reading goes on
            // meanwhile; commits go out in order, and a lost one only means those messages are read again.
            let error = consumer.commit(after: messages, async: true)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("kafka offsets not committed; those messages will be read again", metadata: ["kafka.error": "\(RdKafka.describe(error))"])
            }
            lastStored = messages
            let failures = consumer.context.commitFailures.exchange(0, ordering: .relaxed)
            if failures > 0 { metrics.commitFailures.increment(by: failures) }
            if let lag = consumer.lag() { metrics.lag.record(lag) }
        }
    }

    /// The events of `messages`, packed into records.
    private func events(of messages: [ConsumedMessage]) -> EventBatch {
        var builder = RecordBuilder()
        for message in messages {
            guard let value = message.value else {
                metrics.skipped.increment()
                continue
            }
            value.withUnsafeBytes { bytes in
                if (try? JSONValidator.validateObject(bytes)) != nil {
                    if memchr(bytes.baseAddress!, 0x0A, bytes.count) != nil || memchr(bytes.baseAddress!, 0x0D, bytes.count) != nil {
                        builder.append(line: JSONValidator.compact(bytes))
                    } else {
                        builder.append(line: bytes)
                    }
                } else if UTF8Validation.firstInvalidOffset(bytes) == nil {
                    metrics.wrapped.increment()
                    builder.append(line: NDJSON.messageEvent(bytes))
                } else {
                    metrics.repaired.increment()
                    let repaired = Array(String(decoding: bytes, as: UTF8.self).utf8)
                    repaired.withUnsafeBytes { builder.append(line: NDJSON.messageEvent($0)) }
                }
            }
        }
        return builder.finish()
    }
}
