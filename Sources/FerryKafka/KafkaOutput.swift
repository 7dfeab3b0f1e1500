import CRdKafka
package import FerryQueue
package import FerryPipeline
import FerryWire
package import Logging
import Metrics
import NIOCore
package import ServiceLifecycle

/// The `kafka` output: leases records oldest first and produces each event as one message to the topic
/// through librdkafka (`acks=all`, idempotent producer). A record is acknowledged in the queue only
/// after librdkafka's delivery report says every one of its events is written.
///
/// Messages librdkafka gave up on for a retriable reason (brokers down longer than its
/// `message.timeout.ms`) are produced again after a backoff, forever; a message refused for good (too
/// large, invalid) moves its whole record to `dead` with the reason. At least once: a crash between the
/// delivery reports and the queue's commit produces those events again after the restart.
package final class KafkaOutput: Service, Sendable {
    private let consumer: Consumer
    private let configuration: KafkaOutputConfiguration
    private let producer: KafkaProducer
    private let logger: Logger
    private let metrics = Metrics()

    struct Metrics: Sendable {
        let events = Counter(label: "ferry_kafka_output_events_total")
        let retries = Counter(label: "ferry_kafka_output_retries_total")
        let dead = Counter(label: "ferry_kafka_output_dead_records_total")
        let delivery = Timer(label: "ferry_kafka_output_delivery_seconds")
    }

    /// The output of the queue's default consumer (tests, tools).
    package convenience init(queue: Queue, configuration: KafkaOutputConfiguration, logger: Logger = Logger(label: "ferry.output.kafka")) throws(ConfigurationError) {
        try self.init(consumer: queue.defaultConsumer, configuration: configuration, logger: logger)
    }

    /// An output that delivers what `consumer` (its own cursor in the queue) has not settled.
    package init(consumer: Consumer, configuration: KafkaOutputConfiguration, logger: Logger = Logger(label: "ferry.output.kafka")) throws(ConfigurationError) {
        guard !configuration.connection.brokers.isEmpty else { throw ConfigurationError("output.kafka.brokers is empty; list at least one host:port") }
        guard !configuration.topic.isEmpty else { throw ConfigurationError("output.kafka.topic is empty; name the topic events go to") }
        self.consumer = consumer
        self.configuration = configuration
        self.logger = logger
        self.producer = try KafkaProducer(configuration: configuration, logger: logger)
    }

    package func run() async throws {
        let slots = Slots(count: configuration.batchesInFlight)
        var purger: Task<Void, Never>?
        await withDiscardingTaskGroup { group in
            await leaseAndDeliver(from: consumer, maxBytes: 16 << 20, maxEvents: configuration.maxEventsPerBatch, slots: slots, logger: logger,
                                  group: &group, while: { !isFailed },
                                  // A fatal producer error is set by librdkafka's callback, without a commit to wake the loop.
                                  idleWait: .seconds(1)) { [self] records in
                await deliver(records)
            }
            // Stopping: batches in flight get a few seconds to be delivered; then librdkafka drops what it
            // still holds, their records are released and stay queued for the next start.
            purger = Task { [producer] in
                try? await Task.sleep(for: .seconds(5))  // the grace period, not a wait for a condition
                if !Task.isCancelled { producer.purge() }
            }
        }
        purger?.cancel()
        producer.close(timeout: .seconds(1))
        if let fatal = producer.context.fatal.withLock({ $0 }) {
            throw ConfigurationError("kafka output stopped: \(fatal); undelivered records stay queued, restart ferry to go on")
        }
    }

    private var backoff: Backoff {
        Backoff(base: .milliseconds(configuration.backoffBaseMilliseconds), cap: .milliseconds(configuration.backoffCapMilliseconds))
    }

    private var isFailed: Bool { producer.context.fatal.withLock { $0 != nil } }

    /// Delivers the events of `records`: until each record is written, refused for good, or Ferry stops.
    private func deliver(_ records: [StoredRecord]) async {
        var messages: [KafkaProducer.Message] = []
        var owner: [Int] = []  // record index of each message
        var outstanding = [Int](repeating: 0, count: records.count)
        var damaged: [UInt64] = []
        var damageReason = ""
        let key = configuration.keyField.map { Array($0.utf8) }
        for (index, stored) in records.enumerated() {
            do {
                let events = try stored.record.events()
                for event in events {
                    messages.append(.init(value: event, key: key.flatMap { TopLevelField.value(named: $0, in: event) }))
                    owner.append(index)
                }
                outstanding[index] = events.count
            } catch {
                damaged.append(stored.sequence)
                damageReason = "record cannot be decoded: \(error.message)"
            }
        }
        if !damaged.isEmpty { _ = try? await consumer.moveToDead(damaged, reason: damageReason) }

        var dead: [Int: String] = [:]
        var settled = Set<Int>(records.indices.filter { outstanding[$0] == 0 })
        var pending = Array(messages.indices)
        var attempt = 0
        while !pending.isEmpty {
            if attempt > 0 {
                if Task.isCancelled || Task.isShuttingDownGracefully || isFailed { break }
                try? await Task.sleep(for: backoff.delay(attempt: attempt))
            }
            attempt += 1
            let start = ContinuousClock.now
            let failures = await producer.produce(pending.map { messages[$0] })
            metrics.delivery.recordNanoseconds((ContinuousClock.now - start).inNanoseconds)
            var failed = Set<Int>()
            var retry: [Int] = []
            for failure in failures {
                let message = pending[failure.index]
                failed.insert(message)
                let record = owner[message]
                if RdKafka.isPermanent(failure.error) {
                    if dead[record] == nil {
                        dead[record] = "kafka refused an event of this record for good: \(RdKafka.describe(failure.error))"
                    }
                } else if dead[record] == nil {
                    retry.append(message)
                }
            }
            var delivered = 0
            for message in pending where !failed.contains(message) {
                outstanding[owner[message]] -= 1
                delivered += 1
            }
            metrics.events.increment(by: delivered)
            // Records are settled as soon as they can be, so that a long outage of some partitions does not
            // hold back the acknowledgement of what was written.
            let done = records.indices.filter { !settled.contains($0) && (outstanding[$0] == 0 || dead[$0] != nil) }
            settled.formUnion(done)
            await settle(records, indices: done, dead: dead)
            pending = retry.filter { dead[owner[$0]] == nil }
            if !pending.isEmpty, let reason = failures.first(where: { !RdKafka.isPermanent($0.error) })?.error {
                metrics.retries.increment(by: pending.count)
                logger.warning("kafka did not take every event; retrying them", metadata: [
                    "kafka.topic": "\(configuration.topic)", "ferry.output.events": "\(pending.count)",
                    "kafka.error": "\(RdKafka.describe(reason))",
                ])
            }
        }
        let unsettled = records.indices.filter { !settled.contains($0) }
        if !unsettled.isEmpty { consumer.release(unsettled.map { records[$0].sequence }) }  // delivered after the next start
    }

    private func settle(_ records: [StoredRecord], indices: [Int], dead: [Int: String]) async {
        let delivered = indices.filter { dead[$0] == nil }.map { records[$0].sequence }
        let refused = indices.filter { dead[$0] != nil }
        if !delivered.isEmpty {
            do {
                try await consumer.acknowledge(delivered)
            } catch {
                logger.error("delivered records could not be acknowledged; they will be produced again", metadata: ["ferry.output.error": "\(error)"])
                consumer.release(delivered)
            }
        }
        for index in refused {
            metrics.dead.increment()
            logger.error("kafka refused an event for good; its record moved to dead", metadata: [
                "ferry.queue.sequence": "\(records[index].sequence)", "kafka.error": "\(dead[index]!)",
            ])
            do {
                try await consumer.moveToDead([records[index].sequence], reason: dead[index]!)
            } catch {
                logger.error("refused record could not be moved to dead", metadata: ["ferry.output.error": "\(error)"])
                consumer.release([records[index].sequence])
            }
        }
    }
}
