package import CRdKafka
package import FerryPipeline
import Foundation
import NIOCore
package import FerryKafka

/// librdkafka's built-in mock cluster: real Kafka brokers' protocol on loopback sockets, inside this
/// process, with error injection. For tests and benchmarks: nothing needs installing.
package final class KafkaMockCluster: @unchecked Sendable {  // librdkafka's mock API is thread-safe
    private let host: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,...` of the mock brokers.
    package let bootstrapServers: String

    package init(brokers: Int = 3) throws(ConfigurationError) {
        let conf = try RdKafka.makeConfiguration([("log_level", "3")], role: "mock cluster")
        host = try RdKafka.makeClient(RD_KAFKA_PRODUCER, conf, role: "mock cluster")
        guard let cluster = rd_kafka_mock_cluster_new(host, Int32(brokers)) else {
            rd_kafka_destroy(host)
            throw ConfigurationError("the mock cluster cannot be made")
        }
        self.cluster = cluster
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(host)
    }

    package func createTopic(_ name: String, partitions: Int = 3, replicationFactor: Int = 3) throws(ConfigurationError) {
        let error = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw ConfigurationError("mock topic \(name): \(RdKafka.describe(error))") }
    }

    /// The next `errors.count` Produce requests (to any broker) fail with these errors, in order.
    package func failProduceRequests(_ errors: [rd_kafka_resp_err_t]) {
        errors.withUnsafeBufferPointer { rd_kafka_mock_push_request_errors_array(cluster, 0, $0.count, $0.baseAddress) }
    }

    /// Produces `values` to `topic` and waits until each is delivered; returns how many failed.
    /// `properties` replace the defaults (e.g. the kafka output's own, for a like-for-like benchmark baseline).
    package func produce(_ values: [[UInt8]], to topic: String, keys: [[UInt8]?]? = nil, properties: [(String, String)]? = nil) throws(ConfigurationError) -> Int {
        let settings = (properties ?? [("acks", "all"), ("linger.ms", "5"), ("queue.buffering.max.messages", "2000000")]) + [("bootstrap.servers", bootstrapServers)]
        let conf = try RdKafka.makeConfiguration(settings, role: "mock producer")
        let failures = FailureCount()
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(failures).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR, let opaque else { return }
            Unmanaged<FailureCount>.fromOpaque(opaque).takeUnretainedValue().count += 1
        }
        let producer = try RdKafka.makeClient(RD_KAFKA_PRODUCER, conf, role: "mock producer")
        defer { rd_kafka_destroy(producer) }
        let handle = rd_kafka_topic_new(producer, topic, nil)
        defer { rd_kafka_topic_destroy(handle) }
        for (index, value) in values.enumerated() {
            let key = keys?[index]
            while true {
                let status = value.withUnsafeBytes { v in
                    (key ?? []).withUnsafeBytes { k in
                        rd_kafka_produce(handle, ferry_rd_kafka_partition_ua(), RD_KAFKA_MSG_F_COPY, UnsafeMutableRawPointer(mutating: v.baseAddress), v.count,
                                         key == nil ? nil : k.baseAddress, key == nil ? 0 : k.count, nil)
                    }
                }
                if status == 0 { break }
                rd_kafka_poll(producer, 10)  // the local buffer is full: serve reports until it has room
            }
        }
        while rd_kafka_flush(producer, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR {}
        return failures.count
    }

    /// Every message of `topic` from its beginning, read by partition assignment (no consumer group), until
    /// `expected` messages are read or `timeout` passes. `firstMessageAt` is set when the first one came.
    /// The mock keeps a few MB per partition; older messages are gone (and the reader starts at the oldest kept).
    package func readTopic(_ topic: String, partitions: Int, expected: Int, timeout: Duration = .seconds(30),
                           properties: [(String, String)] = [],
                           firstMessageAt: UnsafeMutablePointer<ContinuousClock.Instant?>? = nil) throws(ConfigurationError) -> [(key: [UInt8]?, value: [UInt8])] {
        let conf = try RdKafka.makeConfiguration([("bootstrap.servers", bootstrapServers), ("group.id", "ferry-test-reader"),
                                                  ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")] + properties, role: "mock reader")
        let consumer = try RdKafka.makeClient(RD_KAFKA_CONSUMER, conf, role: "mock reader")
        defer { rd_kafka_destroy(consumer) }
        rd_kafka_poll_set_consumer(consumer)
        let list = rd_kafka_topic_partition_list_new(Int32(partitions))
        for partition in 0..<partitions {
            rd_kafka_topic_partition_list_add(list, topic, Int32(partition))!.pointee.offset = ferry_rd_kafka_offset_beginning()
        }
        rd_kafka_assign(consumer, list)
        rd_kafka_topic_partition_list_destroy(list)
        defer { _ = rd_kafka_consumer_close(consumer) }
        var result: [(key: [UInt8]?, value: [UInt8])] = []
        let deadline = ContinuousClock.now + timeout
        while result.count < expected && ContinuousClock.now < deadline {
            guard let message = rd_kafka_consumer_poll(consumer, 100) else { continue }
            defer { rd_kafka_message_destroy(message) }
            let m = message.pointee
            guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            if result.isEmpty { firstMessageAt?.pointee = .now }
            let value = m.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
            let key = m.key.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
            result.append((key, value))
        }
        return result
    }

    private final class FailureCount: @unchecked Sendable {  // written by the one poll thread, read after flush
        var count = 0
    }
}
