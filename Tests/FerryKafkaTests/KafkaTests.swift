import CRdKafka
@testable import FerryKafka
import FerryKafkaTestSupport
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import NIOCore
import Testing

/// The kafka output and input against librdkafka's mock cluster (real Kafka protocol on loopback
/// sockets, started by each test in its own process).
@Suite(.tags(.long), .timeLimit(.minutes(5))) struct KafkaTests {
    let quiet = Logger(label: "q") { _ in SwiftLogNoOpLogHandler() }

    @Test func topLevelFieldFindsStringsAndScalarsOnly() {
        func field(_ name: String, _ json: String) -> String? {
            var buffer = ByteBuffer(string: json)
            buffer.moveReaderIndex(forwardBy: 0)
            return TopLevelField.value(named: Array(name.utf8), in: buffer).map { String(buffer: $0) }
        }
        let event = #"{"a":{"host":"inner"},"list":[1,"x]",{"host":2}], "host" : "edge-01","n":42,"t":true,"z":null,"s":"q\"uote"}"#
        #expect(field("host", event) == "edge-01")  // not the nested one
        #expect(field("n", event) == "42")
        #expect(field("t", event) == "true")
        #expect(field("s", event) == #"q\"uote"#)
        #expect(field("z", event) == nil)
        #expect(field("a", event) == nil)
        #expect(field("list", event) == nil)
        #expect(field("missing", event) == nil)
        #expect(field("host", #"{"host":"#) == nil)  // cut short: nil, no crash
        #expect(field("host", "not json") == nil)
    }

    /// Appends `count` events with ids `<prefix>-<i>` and a `host` field in batches of `perBatch`.
    func appendEvents(_ queue: Queue, prefix: String, count: Int, perBatch: Int = 500) async throws -> [String] {
        var ids: [String] = []
        var start = 0
        while start < count {
            let lines = (start..<min(start + perBatch, count)).map { i -> [UInt8] in
                ids.append("\(prefix)-\(i)")
                return Array(#"{"id":"\#(prefix)-\#(i)","host":"h\#(i % 7)","message":"link state changed"}"#.utf8)
            }
            _ = try await queue.append(EventBatch(lines: lines, maxRecordBytes: 16 << 10))
            start += perBatch
        }
        return ids
    }

    func ids(_ messages: [(key: [UInt8]?, value: [UInt8])]) -> [String] {
        messages.compactMap { eventID(String(decoding: $0.value, as: UTF8.self)) }
    }

    func eventID(_ line: String) -> String? {
        guard let start = line.range(of: #""id":""#)?.upperBound, let end = line[start...].firstIndex(of: "\"") else { return nil }
        return String(line[start..<end])
    }

    func outputConfiguration(_ cluster: KafkaMockCluster, topic: String, properties: [String: String] = [:]) -> KafkaOutputConfiguration {
        var c = KafkaOutputConfiguration(connection: KafkaConnection(brokers: [cluster.bootstrapServers], properties: properties), topic: topic, keyField: "host")
        c.backoffBaseMilliseconds = 20
        c.backoffCapMilliseconds = 200
        return c
    }

    @Test func outputDeliversEveryEventOnceWithItsKey() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("events", partitions: 3)
        try await withTemporaryQueue(prefix: "ferry-kafka") { queue, _ in
            let sent = try await appendEvents(queue, prefix: "k", count: 20_000)

            let output = try KafkaOutput(queue: queue, configuration: outputConfiguration(cluster, topic: "events"), logger: quiet)
            try await withServices([output]) { () async throws in
                #expect(try await eventually { try queue.readStats().records == 0 })
            }
            let stats = try queue.readStats()
            #expect(stats.deliveredEvents == 20_000)
            #expect(stats.deadRecords == 0)

            let messages = try cluster.readTopic("events", partitions: 3, expected: sent.count + 1, timeout: .seconds(10))
            let received = ids(messages)
            #expect(received.count == sent.count, "every event once, nothing more")
            #expect(Set(received) == Set(sent))
            // The key is the event's host field: h<i mod 7>.
            for message in messages.prefix(200) {
                let id = eventID(String(decoding: message.value, as: UTF8.self))!
                let i = Int(id.split(separator: "-").last!)!
                #expect(message.key.map { String(decoding: $0, as: UTF8.self) } == "h\(i % 7)")
            }
        }
    }

    @Test func brokerErrorsBeyondLibrdkafkasTimeoutAreRetriedWithoutLoss() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("events", partitions: 3)
        try await withTemporaryQueue(prefix: "ferry-kafka") { queue, _ in
            let sent = try await appendEvents(queue, prefix: "r", count: 5_000)

            // Produce requests fail with a retriable error for several seconds: librdkafka retries them itself
            // until message.timeout.ms (1 s here) and then gives the messages up; Ferry produces them again.
            // (Brokers are not taken down: the mock rebinds a broker's port when it comes back, and a test
            // running beside this one may have taken that port meanwhile.)
            cluster.failProduceRequests(Array(repeating: RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, count: 200))
            let log = RecordingLogHandler.Store()
            let output = try KafkaOutput(queue: queue, configuration: outputConfiguration(cluster, topic: "events", properties: ["message.timeout.ms": "1000"]),
                                         logger: log.logger(label: "ferry.output.kafka"))
            try await withServices([output]) { () async throws in
                #expect(try await eventually { log.all.contains { $0.message.hasPrefix("kafka did not take every event; retrying") } })
                #expect(try await eventually { try queue.readStats().records == 0 })
            }
            #expect(try queue.readStats().deadRecords == 0)
            let received = ids(try cluster.readTopic("events", partitions: 3, expected: sent.count, timeout: .seconds(10)))
            #expect(Set(received) == Set(sent), "every event arrives")
            #expect(received.count >= sent.count)
        }
    }

    @Test func anEventKafkaRefusesForGoodSendsItsRecordToDeadAndTheRestFlows() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("events", partitions: 1, replicationFactor: 1)
        try await withTemporaryQueue(prefix: "ferry-kafka") { queue, _ in
            let before = try await appendEvents(queue, prefix: "a", count: 100)
            let big = #"{"id":"too-large","pad":""# + String(repeating: "x", count: 20_000) + #""}"#
            _ = try await queue.append(EventBatch(lines: [Array(big.utf8)]))
            let after = try await appendEvents(queue, prefix: "b", count: 100)

            // message.max.bytes 10000 on the producer: the 20 kB event is refused when produced (MSG_SIZE_TOO_LARGE).
            let output = try KafkaOutput(queue: queue, configuration: outputConfiguration(cluster, topic: "events", properties: ["message.max.bytes": "10000"]), logger: quiet)
            try await withServices([output]) { () async throws in
                #expect(try await eventually { try queue.readStats().records == 0 })
            }
            let dead = try queue.deadRecords()
            #expect(dead.count == 1)
            #expect(dead.first?.reason.contains("MSG_SIZE_TOO_LARGE") == true)
            let received = ids(try cluster.readTopic("events", partitions: 1, expected: 200, timeout: .seconds(10)))
            #expect(Set(received) == Set(before + after))
        }
    }

    func inputConfiguration(_ cluster: KafkaMockCluster, topic: String, group: String) -> KafkaInputConfiguration {
        // A short session: a member that stopped without leaving the group is replaced in seconds, not 45.
        KafkaInputConfiguration(connection: KafkaConnection(brokers: [cluster.bootstrapServers], properties: ["session.timeout.ms": "3000", "heartbeat.interval.ms": "300"]),
                                topics: [topic], groupID: group, maxEventsPerAppend: 1000)
    }

    func storedEvents(_ queue: Queue) throws -> [String] {
        var events: [String] = []
        var from: UInt64 = 0
        while true {
            let page = try queue.peek(from: from, maxRecords: 1000)
            for stored in page.records { events += try stored.record.events().map { String(buffer: $0) } }
            if page.records.isEmpty { return events }
            from = page.nextSequence
        }
    }

    @Test func inputStoresATopicAndCommitsOnlyWhatIsStored() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("in", partitions: 3)
        let values = (0..<5_000).map { Array(#"{"id":"m-\#($0)","v":\#($0)}"#.utf8) }
        let odd: [[UInt8]] = [Array("plain \"text\"".utf8), [0x66, 0xFF, 0x6F], Array("{\n \"id\": \"pretty\"\n}".utf8)]
        #expect(try cluster.produce(values + odd, to: "in") == 0)

        try await withTemporaryQueue(prefix: "ferry-kafka") { queue, _ in
            let first = try KafkaInput(queue: queue, configuration: inputConfiguration(cluster, topic: "in", group: "g1"), logger: quiet)
            try await withServices([first]) { () async throws in
                #expect(try await eventually { try queue.readStats().events >= 5_003 })
            }
            var events = try storedEvents(queue)
            #expect(events.count == 5_003)
            #expect(Set(events.compactMap(eventID)) == Set((0..<5_000).map { "m-\($0)" } + ["pretty"]))
            #expect(events.contains(#"{"message":"plain \"text\""}"#), "a value that is not JSON is wrapped")
            #expect(events.contains("{\"message\":\"f\u{FFFD}o\"}"), "invalid UTF-8 is replaced, not dropped")
            #expect(events.contains(#"{"id":"pretty"}"#), "a multi-line object is stored on one line")

            // A second member of the same group starts after the committed offsets: only the new messages.
            #expect(try cluster.produce((0..<5).map { Array(#"{"id":"late-\#($0)"}"#.utf8) }, to: "in") == 0)
            let second = try KafkaInput(queue: queue, configuration: inputConfiguration(cluster, topic: "in", group: "g1"), logger: quiet)
            try await withServices([second]) { () async throws in
                #expect(try await eventually { try queue.readStats().events >= 5_008 })
            }
            events = try storedEvents(queue)
            #expect(events.count == 5_008, "nothing committed is read twice")
        }
    }

    /// A 1 MiB queue whose output is dead: the input pauses when the queue is full (it does not read on,
    /// it does not commit offsets) and, as an output drains the queue, stores every message exactly once.
    @Test func aFullQueuePausesTheInputAndLosesNothing() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("full", partitions: 3)
        var seed: UInt64 = 11
        func hex(_ count: Int) -> String {
            String((0..<count).map { _ in
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Array("0123456789abcdef")[Int(seed >> 60)]
            })
        }
        let sent = (0..<6_000).map { "p-\($0)" }
        #expect(try cluster.produce(sent.map { Array(#"{"id":"\#($0)","pad":"\#(hex(500))"}"#.utf8) }, to: "full") == 0)

        let logs = RecordingLogHandler.Store()
        try await withTemporaryQueue(prefix: "ferry-kafka", configuration: QueueConfiguration(maxBytes: 1 << 20)) { queue, _ in
            var configuration = inputConfiguration(cluster, topic: "full", group: "g-full")
            configuration.maxEventsPerAppend = 250
            let input = try KafkaInput(queue: queue, configuration: configuration, logger: logs.logger(label: "ferry.input.kafka"))
            var delivered: [String] = []
            try await withServices([input]) { () async throws in
                #expect(try await eventually { logs.all.contains { $0.message.hasPrefix("input paused") } }, "the input never paused")
                #expect(try queue.readStats().events < UInt64(sent.count), "a 1 MiB queue cannot hold them all")
                // The output comes back: lease and acknowledge until every message went through.
                let deadline = ContinuousClock.now + .seconds(60)
                while delivered.count < sent.count && ContinuousClock.now < deadline {
                    let lease = try queue.lease(maxRecords: 16)
                    if lease.isEmpty {
                        await queue.waitForAppend(timeout: .milliseconds(200))
                        continue
                    }
                    for stored in lease.records { delivered += try stored.record.events().compactMap { eventID(String(buffer: $0)) } }
                    try await queue.acknowledge(lease)
                }
            }
            #expect(delivered.count == sent.count, "\(sent.count - delivered.count) messages missing or \(delivered.count - sent.count) too many")
            #expect(Set(delivered) == Set(sent))
            #expect(logs.all.contains { $0.message.hasPrefix("input resumed") })
        }
    }

    @Test func aCrashBetweenAppendAndOffsetCommitLosesNothing() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("in", partitions: 3)
        let sent = (0..<3_000).map { "c-\($0)" }
        #expect(try cluster.produce(sent.map { Array(#"{"id":"\#($0)"}"#.utf8) }, to: "in") == 0)

        try await withTemporaryQueue(prefix: "ferry-kafka") { queue, _ in
            struct Crash: Error {}
            // The first member stops right after its first queue commit, before committing offsets.
            let crashing = try KafkaInput(queue: queue, configuration: inputConfiguration(cluster, topic: "in", group: "g2"), logger: quiet,
                                          afterAppend: { throw Crash() })
            await #expect(throws: Crash.self) { try await crashing.run() }
            let appendedBeforeCrash = try queue.readStats().events
            #expect(appendedBeforeCrash > 0)

            let next = try KafkaInput(queue: queue, configuration: inputConfiguration(cluster, topic: "in", group: "g2"), logger: quiet)
            try await withServices([next]) { () async throws in
                #expect(try await eventually { Set(try storedEvents(queue).compactMap(eventID)).count == sent.count })
            }
            let stored = try storedEvents(queue).compactMap(eventID)
            #expect(Set(stored) == Set(sent), "no event missing")
            let duplicates = stored.count - sent.count
            #expect(duplicates >= 0 && UInt64(duplicates) <= appendedBeforeCrash, "duplicates only from the uncommitted batch")
        }
    }
}
