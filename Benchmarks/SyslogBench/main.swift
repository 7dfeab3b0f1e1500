// Syslog benchmark: the syslog input's own cost, with a store that only counts (the queue's cost is the
// queue benchmark's), each figure with a baseline measured in the same run:
//   1. parse: 140-byte messages (RFC 5424 as `logger` sends them, RFC 3164) parsed into event batches on
//      one thread; baseline: `JSONValidator.validateObject` over the resulting events, i.e. what the http
//      ingest does for each event it takes.
//   2. tcp: 4 connections sending octet-counted 140-byte messages to `SyslogServer` on loopback; baseline:
//      the same bytes from the same senders into a SwiftNIO server that discards them.
//
//   tools/bench/syslog [--messages N]
import FerrySyslog
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

let messages = { () -> Int in
    let args = CommandLine.arguments
    if args.count == 3, args[1] == "--messages", let n = Int(args[2]), n >= 4 { return n }
    if args.count == 1 { return 2_000_000 }
    FileHandle.standardError.write(Data("usage: ferry-bench-syslog [--messages N]\n".utf8))
    exit(2)
}()

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// 140-byte messages, the same shape as tools/bench/compare's events, in the two formats.
func message(_ n: Int, rfc3164: Bool) -> [UInt8] {
    let apps = ["checkout", "payments", "search", "auth", "catalog"]
    let app = apps[n % apps.count]
    let text = rfc3164
        ? "<134>Dec  2 11:46:05 edge-\(String(format: "%02d", n % 64)) \(app)[4242]: id=\(n) order accepted status=200 ms=\(n % 1000)"
        : "<134>1 2026-12-02T11:46:05.\(String(format: "%06d", n % 1_000_000))Z edge-\(String(format: "%02d", n % 64)) \(app) 4242 - [x@1 a=\"b\"] id=\(n) status=200"
    var bytes = Array(text.utf8)
    while bytes.count < 140 { bytes.append(UInt8(ascii: ".")) }
    return Array(bytes.prefix(140))
}

let sample = (0..<10_000).map { message($0, rfc3164: $0 % 2 == 1) }

// MARK: 1. parse

func parsePhase() -> (parse: Double, validate: Double) {
    var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(0))
    var batches: [SyslogEventBatch] = []
    let start = now()
    var batch = SyslogEventBatch()
    for n in 0..<messages {
        sample[n % sample.count].withUnsafeBytes { _ = batch.append($0, parser: &parser, sourceIP: Array("10.1.2.3".utf8), now: 1_796_211_965_000) }
        if batch.count == 4096 {
            batches.append(batch)
            if batches.count > 4 { batches.removeFirst() }
            batch = SyslogEventBatch()
        }
    }
    let parse = Double(messages) / (now() - start)
    batches.append(batch)
    let validateStart = now()
    var validated = 0
    while validated < messages {
        for batch in batches {
            batch.forEach { event, _ in try! JSONValidator.validateObject(event) }
            validated += batch.count
        }
    }
    return (parse, Double(validated) / (now() - validateStart))
}

// MARK: 2. tcp

/// Sends `perConnection` octet-counted messages on each of 4 connections to `port`, from 4 threads.
func send(port: Int, perConnection: Int) {
    let framed = sample.map { Array("\($0.count) ".utf8) + $0 }
    let threads = (0..<4).map { connection in
        Thread {
            guard let fd = connectLoopback(port: port) else { fatalError("cannot connect to \(port)") }
            defer { close(fd) }
            var chunk: [UInt8] = []
            chunk.reserveCapacity(1 << 18)
            for n in 0..<perConnection {
                chunk += framed[(n + connection * 7) % framed.count]
                if chunk.count >= 1 << 18 || n == perConnection - 1 {
                    var offset = 0
                    while offset < chunk.count {
                        let written = chunk[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        guard written > 0 else { fatalError("send failed: \(errno)") }
                        offset += written
                    }
                    chunk.removeAll(keepingCapacity: true)
                }
            }
        }
    }
    threads.forEach { $0.start() }
}

func waitUntil(_ condition: () -> Bool) {
    while !condition() { usleep(200) }
}

/// Counts the bytes every connection received.
final class ByteCounter: ChannelInboundHandler, @unchecked Sendable {  // one per connection, on its loop
    typealias InboundIn = ByteBuffer
    static let total = Atomic<Int>(0)
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        ByteCounter.total.add(unwrapInboundIn(data).readableBytes, ordering: .relaxed)
    }
}

func tcpPhase() async throws -> (server: Double, baseline: Double) {
    let perConnection = messages / 4
    let total = perConnection * 4
    let framedBytes = (0..<4).reduce(0) { sum, connection in
        sum + (0..<perConnection).reduce(0) { $0 + sample[($1 + connection * 7) % sample.count].count + "\(140) ".utf8.count }
    }

    // Baseline: the bytes through NIO, discarded.
    let baselineServer = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ByteCounter()) }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    var start = now()
    send(port: baselineServer.localAddress!.port!, perConnection: perConnection)
    waitUntil { ByteCounter.total.load(ordering: .relaxed) >= framedBytes }
    let baseline = Double(total) / (now() - start)
    try await baselineServer.close()

    // The syslog server with a store that counts.
    let stored = Atomic<Int>(0)
    let store: SyslogStore = { batch in stored.add(batch.count, ordering: .relaxed) }
    let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
    let server = try await SyslogServer.bind(configuration: SyslogServerConfiguration(name: "bench", tcp: ListenAddress(host: "127.0.0.1", port: 0)),
                                             store: store, logger: quiet, utcOffset: SyslogParser.fixedUTCOffset(0))
    start = now()
    send(port: server.tcpAddress!.port!, perConnection: perConnection)
    waitUntil { stored.load(ordering: .relaxed) >= total }
    let rate = Double(total) / (now() - start)
    await server.shutdown()
    return (rate, baseline)
}

let (parse, validate) = parsePhase()
print("parse   \(Int(parse)) messages/s on one thread; baseline JSON validation of the same events \(Int(validate))/s; ratio \(String(format: "%.2f", parse / validate))")
let (server, baseline) = try await tcpPhase()
print("tcp     \(Int(server)) messages/s over 4 connections into SyslogServer (counting store); baseline NIO discard \(Int(baseline))/s; ratio \(String(format: "%.2f", server / baseline))")
