// Kafka benchmark, against librdkafka's mock cluster (3 brokers in this process, loopback sockets):
//   queue -> Kafka: a backlog drained by the kafka output (acks=all, idempotent, lz4), against the
//                   baseline of librdkafka producing the same events with the same settings directly;
//   Kafka -> queue: a topic read by the kafka input into a fresh queue (fsynced appends, offsets
//                   committed after each), against the baseline of librdkafka reading the same topic.
// Each figure is reported with its ratio to the baseline of the same run.
//
//   tools/bench/kafka [--events N] [--dir DIR]
import FerryKafka
import FerryKafkaTestSupport
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import ServiceLifecycle

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
var events = 1_000_000
var base = NSTemporaryDirectory()
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--events": events = Int(arguments.next() ?? "") ?? events
    case "--dir": base = arguments.next() ?? base
    default:
        FileHandle.standardError.write(Data("usage: ferry-bench-kafka [--events N] [--dir DIR]\n".utf8))
        exit(2)
    }
}

func measure(_ body: () async throws -> Void) async rethrows -> (seconds: Double, cpu: Double) {
    let cpu = cpuSeconds()
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, cpuSeconds() - cpu)
}

/// Waits for `condition`, polling every 5 ms (the timing's resolution); gives up after 10 minutes.
func waitUntil(_ condition: () throws -> Bool) async throws {
    guard try await eventually(timeout: .seconds(600), every: .milliseconds(5), condition) else { throw CancellationError() }
}

/// Writes a line at once (no stdio buffering), so a long run shows each row as it is measured.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func row(_ name: String, _ count: Int, _ m: (seconds: Double, cpu: Double), baseline: Double?) {
    let rate = Double(count) / m.seconds
    let ratio = baseline.map { String(format: "%.2f", rate / $0) } ?? "1.00"
    let label = name.padding(toLength: 44, withPad: " ", startingAt: 0)
    say(label + String(format: " %12.0f events/s   %6.2f s   cpu %6.2f s   ratio ", rate, m.seconds, m.cpu) + ratio)
}

func bench(events: Int, base: String) async throws {
    let lines = realisticEventLines(count: events)
    let cluster = try KafkaMockCluster(brokers: 3)
    try cluster.createTopic("baseline", partitions: 6)
    try cluster.createTopic("ferry", partitions: 6)
    say("kafka benchmark: \(events) events of ~\(lines.reduce(0) { $0 + $1.count } / events) bytes, mock cluster of 3 brokers, 6 partitions")

    // Baseline: librdkafka producing the events with the kafka output's own settings.
    let output = KafkaOutputConfiguration(connection: KafkaConnection(brokers: [cluster.bootstrapServers]), topic: "ferry")
    let producerSettings = output.librdkafkaProperties().filter { $0.0 != "bootstrap.servers" && $0.0 != "security.protocol" }
    let produced = try await measure {
        let failed = try cluster.produce(lines, to: "baseline", properties: producerSettings)
        precondition(failed == 0, "baseline produce failed for \(failed) events")
    }
    row("baseline: librdkafka produce (same settings)", events, produced, baseline: nil)

    // Ferry: the same events in a queue (1000 per append), drained by the kafka output.
    let dir = base + "/ferry-bench-kafka-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let queue = try Queue.open(at: dir + "/out", logger: quiet)
    var start = 0
    while start < events {
        _ = try await queue.append(EventBatch(lines: lines[start..<min(start + 1000, events)]))
        start += 1000
    }
    let kafkaOutput = try KafkaOutput(queue: queue, configuration: output, logger: quiet)
    let startOutput = ContinuousClock.now
    var drainedAt: ContinuousClock.Instant?
    let drained = try await measure {
        try await withServices([kafkaOutput]) {
            try await waitUntil {
                if try queue.readStats().records == 0 { drainedAt = .now }
                return drainedAt != nil
            }
        }
    }
    row("ferry: queue -> kafka output", events, (seconds(drainedAt! - startOutput), drained.cpu), baseline: Double(events) / produced.seconds)
    queue.close()

    // Kafka -> queue, on a topic of its own, produced as the output produces (lz4): the mock cluster keeps
    // only a few MB per partition and drops older messages.
    let inputEvents = min(events, 200_000)
    try cluster.createTopic("input", partitions: 12)
    FileHandle.standardError.write(Data("producing \(inputEvents) events to the input topic\n".utf8))
    let inputFailures = try cluster.produce(Array(lines.prefix(inputEvents)), to: "input", properties: producerSettings)
    precondition(inputFailures == 0)

    FileHandle.standardError.write(Data("reading them back\n".utf8))
    // The mock cluster holds a fetch for fetch.wait.max.ms (default 500 ms) even when data is there, which a
    // real broker does not; both consumers below get a short wait so the mock's quirk does not dominate.
    // The baseline also gets the input's own queued.min.messages, which keeps librdkafka fetching ahead.
    let mockFetch = [("fetch.wait.max.ms", "5"), ("fetch.error.backoff.ms", "10")]
    let inputDefaults = KafkaInputConfiguration(connection: KafkaConnection(brokers: []), topics: ["input"]).librdkafkaProperties()
        .filter { $0.0 == "queued.min.messages" }
    // Baseline: librdkafka reading the topic (partition assignment, no group, no commits), timed from its
    // first message, as the input below is timed from its first event (a group join takes seconds first).
    var first: ContinuousClock.Instant?
    var read = 0
    let consumed = try await measure { read = try cluster.readTopic("input", partitions: 12, expected: inputEvents, timeout: .seconds(120), properties: mockFetch + inputDefaults, firstMessageAt: &first).count }
    guard read >= inputEvents else {
        FileHandle.standardError.write(Data("the input topic gave back \(read) of \(inputEvents) events; the mock cluster dropped old messages, try fewer --events\n".utf8))
        exit(1)
    }
    let consumeSeconds = seconds(ContinuousClock.now - first!)  // the read returns right after its last message
    row("baseline: librdkafka consume (from 1st msg)", inputEvents, (consumeSeconds, consumed.cpu), baseline: nil)

    // Ferry: the kafka input into a fresh queue, offsets committed after each fsynced append.
    let inputQueue = try Queue.open(at: dir + "/in", logger: quiet)
    let input = try KafkaInput(queue: inputQueue, configuration: KafkaInputConfiguration(connection: KafkaConnection(brokers: [cluster.bootstrapServers], properties: Dictionary(uniqueKeysWithValues: mockFetch)), topics: ["input"], groupID: "bench"), logger: quiet)
    let startInput = ContinuousClock.now
    var firstEvent: ContinuousClock.Instant?
    var lastEvent: ContinuousClock.Instant?
    let appended = try await measure {
        try await withServices([input]) {
            try await waitUntil {
                let stored = try inputQueue.readStats().events
                if stored > 0 && firstEvent == nil { firstEvent = .now }
                if stored >= UInt64(inputEvents) { lastEvent = .now }
                return lastEvent != nil
            }
        }
    }
    let appendSeconds = seconds(lastEvent! - firstEvent!)
    row("ferry: kafka input -> queue (from 1st event)", inputEvents, (appendSeconds, appended.cpu), baseline: Double(inputEvents) / consumeSeconds)
    say(String(format: "  (before the first event: group join and first poll, %.2f s)", seconds(firstEvent! - startInput)))
    inputQueue.close()
}

try await bench(events: events, base: base)
