import CRdKafka
package import FerryQueue
package import FerryPipeline
package import FerryWire
import FoundationEssentials
package import Logging
import Metrics
import NIOPosix
package import ServiceLifecycle

/// The `kafka` input: a consumer group member that reads the topics and appends their messages to the
/// queue, committing the Kafka offsets only after the queue's commit (fsynced). A crash between the two
/// reads those messages again after the restart: duplicates, never a gap.
///
/// Each message value becomes one event: a JSON object is stored as it is (compacted to one line if it
/// spans several); any other value becomes `{"message":"<value>"}` (invalid UTF-8 replaced by U+FFFD and
/// counted); a message without a value (a tombstone) is skipped and counted.
package final class KafkaInput: Input, Sendable {
    private let intake: Intake
    private let configuration: KafkaInputConfiguration
    private let consumer: KafkaConsumer
    private let logger: Logger
    private let afterAppend: (@Sendable () async throws -> Void)?
    private let metrics = Metrics()

    struct Metrics: Sendable {
        let wrapped = Counter(label: "ferry_kafka_input_wrapped_total")
        let repaired = Counter(label: "ferry_kafka_input_repaired_total")
        let skipped = Counter(label: "ferry_kafka_input_skipped_total")
        let commitFailures = Counter(label: "ferry_kafka_input_commit_failures_total")
        let lag = Gauge(label: "ferry_kafka_input_lag")
    }

    /// An input with an intake of its own (events stamped with `stamp`), for tests and benchmarks.
    package convenience init(queue: Queue, configuration: KafkaInputConfiguration, stamp: EventStamp = .none,
                             logger: Logger = Logger(label: "ferry.input.kafka"),
                             afterAppend: (@Sendable () async throws -> Void)? = nil) throws(ConfigurationError) {
        try self.init(intake: Intake(input: "kafka", queue: queue, stamp: stamp, logger: logger), configuration: configuration,
                      logger: logger, afterAppend: afterAppend)
    }

    /// `afterAppend` runs between the queue's commit and the offset commit; tests use it to stop there.
    package init(intake: Intake, configuration: KafkaInputConfiguration, logger: Logger = Logger(label: "ferry.input.kafka"),
                afterAppend: (@Sendable () async throws -> Void)? = nil) throws(ConfigurationError) {
        self.intake = intake
        self.configuration = configuration
        self.logger = logger
        self.afterAppend = afterAppend
        self.consumer = try KafkaConsumer(configuration: configuration, logger: logger)
    }

    /// At once: the consumer is made in `init`; it joins its group while it runs.
    package func started() async -> String {
        "Also read:    Kafka topics \(configuration.topics.joined(separator: ", ")) on \(configuration.connection.brokers.joined(separator: ", ")) (group \(configuration.groupID))"
    }

    package func run() async throws {
        let pool = NIOThreadPool.singleton
        var lastStored: [ConsumedMessage] = []
        defer {
            // A last synchronous commit of what is stored, so the next start does not read it again.
            if !lastStored.isEmpty { _ = consumer.commit(after: lastStored, async: false) }
            consumer.close()
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if let fatal = consumer.context.fatal.withLock({ $0 }) {
                throw ConfigurationError("kafka input stopped: \(fatal); restart ferry to go on")
            }
            // librdkafka blocks while it waits for messages: that happens on a thread of the pool, never on
            // one of Swift's cooperative threads.
            let messages = try await pool.runIfActive { [consumer, configuration] in
                consumer.poll(maxMessages: configuration.maxEventsPerAppend, timeout: .milliseconds(250))
            }
            guard !messages.isEmpty else { continue }
            let batch = events(of: messages)
            if batch.eventCount > 0 {
                // Not a single message is lost to a full queue: the seam appends the same messages until the
                // queue takes them (reading pauses and offsets are not committed meanwhile), or Ferry stops.
                guard await intake.appendWaiting(batch) != nil else { return }  // not committed: read again next start
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

    /// The events of `messages`, stamped and packed into records.
    private func events(of messages: [ConsumedMessage]) -> IntakeBatch {
        var batch = intake.batch()
        let keys = intake.stamp.keys
        for message in messages {
            guard let value = message.value else {
                metrics.skipped.increment()
                continue
            }
            batch.sourceBytes += value.count
            value.withUnsafeBytes { bytes in
                if let present = try? JSONValidator.validateObject(bytes, finding: keys) {
                    JSONValidator.withSingleLine(bytes) { batch.add(object: $0, present: present) }
                } else if UTF8Validation.firstInvalidOffset(bytes) == nil {
                    metrics.wrapped.increment()
                    batch.add(message: bytes)
                } else {
                    metrics.repaired.increment()
                    let repaired = Array(String(decoding: bytes, as: UTF8.self).utf8)
                    repaired.withUnsafeBytes { batch.add(message: $0) }
                }
            }
        }
        return batch
    }
}
