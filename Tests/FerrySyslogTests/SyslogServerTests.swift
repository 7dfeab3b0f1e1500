@testable import FerrySyslog
import FerryTestSupport
import FerryWire
import Foundation
import MetricsTestKit
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// The syslog servers on real sockets on loopback, with util-linux `logger` and raw sockets as senders and an
/// in-memory store.
@Suite(.timeLimit(.minutes(2))) struct SyslogServerTests {
    func withServer(
        _ configure: (inout SyslogServerConfiguration) -> Void = { _ in }, store: MemoryStore, metrics: TestMetrics = TestMetrics(),
        _ body: (SyslogServer) async throws -> Void
    ) async throws {
        var configuration = SyslogServerConfiguration(name: "edge", tcp: ListenAddress(host: "127.0.0.1", port: 0), udp: ListenAddress(host: "127.0.0.1", port: 0))
        configure(&configuration)
        let server = try await SyslogServer.bind(configuration: configuration, store: store.store, logger: quietLogger,
                                                 utcOffset: SyslogParser.fixedUTCOffset(0), metricsFactory: metrics)
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    func loggerArguments(_ server: SyslogServer, udp: Bool = false) -> [String] {
        ["-n", "127.0.0.1", "-P", String(udp ? server.udpAddress!.port! : server.tcpAddress!.port!), udp ? "-d" : "-T"]
    }

    /// SIGHUP's limits: applied to a running listener, except a message size a UDP listener was sized for.
    @Test func newLimitsApplyUnlessAUDPListenerWasSizedForTheOldMessageSize() async throws {
        var smaller = SyslogLimits()
        smaller.maxMessageSize = 1024
        var fewer = SyslogLimits()
        fewer.maxConnections = 2
        try await withServer(store: MemoryStore()) { server in
            // Both changed: the connection limit is applied, the message size keeps its running value.
            var both = fewer
            both.maxMessageSize = smaller.maxMessageSize
            let reloaded = server.apply(both, path: "input.syslog")
            #expect(reloaded.restartKeys == ["input.syslog.max_message_size"])
            #expect(reloaded.inEffect == fewer)
            #expect(server.apply(fewer, path: "input.syslog").restartKeys == [])
        }
        try await withServer({ $0.udp = nil }, store: MemoryStore()) { server in
            let reloaded = server.apply(smaller, path: "input.syslog")
            #expect(reloaded.restartKeys == [] && reloaded.inEffect == smaller)
        }
    }

    @Test func loggerRFC5424OctetCountedOverTCP() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            try await runLogger(loggerArguments(server) + ["--rfc5424", "--octet-count", "-t", "myapp", "-p", "local3.warning", "--msgid", "M1", "text"])
            #expect(try await eventually { store.events.count == 1 })
            let event = try fields(store.events[0])
            #expect(event["appname"] as? String == "myapp")
            #expect(event["msgid"] as? String == "M1")
            #expect(event["facility"] as? String == "local3")
            #expect(event["severity"] as? String == "warning")
            #expect(event["message"] as? String == "text")
            #expect(event["source_ip"] as? String == "127.0.0.1")
            #expect(event["hostname"] is String)
            #expect((event["structured_data"] as? [String: Any])?["timeQuality"] != nil)
            #expect((event["@timestamp"] as? String)?.hasSuffix("Z") == true)
        }
    }

    @Test func loggerRFC5424NewlineFramedWithStructuredDataOverTCP() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            try await runLogger(loggerArguments(server) + ["--rfc5424", "-t", "myapp", "--msgid", "LOGIN",
                                                           "--sd-id", "zoo@123", "--sd-param", #"tiger="hungry""#, "--sd-param", #"zebra="run\"ning\]""#, "hello sd"])
            #expect(try await eventually { store.events.count == 1 })
            let event = try fields(store.events[0])
            #expect(event["msgid"] as? String == "LOGIN")
            #expect(event["message"] as? String == "hello sd")
            let zoo = (event["structured_data"] as? [String: Any])?["zoo@123"] as? [String: String]
            #expect(zoo == ["tiger": "hungry", "zebra": #"run"ning]"#])
        }
    }

    @Test func loggerRFC3164OverTCP() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            try await runLogger(loggerArguments(server) + ["--rfc3164", "-t", "myapp", "-i", "-p", "daemon.err", "old style"])
            #expect(try await eventually { store.events.count == 1 })
            let event = try fields(store.events[0])
            #expect(event["appname"] as? String == "myapp")
            #expect(Int(event["procid"] as? String ?? "") != nil)
            #expect(event["facility"] as? String == "daemon")
            #expect(event["severity"] as? String == "err")
            #expect(event["message"] as? String == "old style")
            #expect(event["@timestamp"] != nil)
        }
    }

    @Test func loggerOverUDPInBothFormats() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            try await runLogger(loggerArguments(server, udp: true) + ["--rfc5424", "-t", "u5424", "--msgid", "M2", "--sd-id", "x@1", "--sd-param", #"k="v""#, "over udp"])
            try await runLogger(loggerArguments(server, udp: true) + ["--rfc3164", "-t", "u3164", "over udp too"])
            #expect(try await eventually { store.events.count == 2 })
            let byApp = try Dictionary(uniqueKeysWithValues: store.events.map { try fields($0) }.map { ($0["appname"] as? String ?? "", $0) })
            #expect(byApp["u5424"]?["msgid"] as? String == "M2")
            #expect(((byApp["u5424"]?["structured_data"] as? [String: Any])?["x@1"] as? [String: String]) == ["k": "v"])
            #expect(byApp["u3164"]?["message"] as? String == "over udp too")
            #expect(byApp["u3164"]?["source_ip"] as? String == "127.0.0.1")
            // Counted when the store call has returned, just after the store recorded the events.
            #expect(try await eventually { metrics.counterTotal(label: "ferry_input_syslog_messages_total", dimensions: [("input", "edge"), ("transport", "udp")]) == 2 })
        }
    }

    @Test func manyLinesOnOneConnectionAreStoredInOrderAndInBatches() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let lines = (0..<3000).map { "line \($0)" }
            try await runLogger(loggerArguments(server) + ["--rfc5424", "--octet-count", "-t", "bulk"], input: lines.joined(separator: "\n") + "\n")
            #expect(try await eventually { store.events.count == 3000 })
            #expect(try store.events.map { try fields($0)["message"] as? String } == lines)
            #expect(store.batchSizes.count < 3000)
            #expect(try await eventually { metrics.counterTotal(label: "ferry_input_syslog_messages_total", dimensions: [("input", "edge"), ("transport", "tcp")]) == 3000 })
            #expect(metrics.counterTotal(label: "ferry_input_syslog_connections_total", dimensions: [("input", "edge"), ("transport", "tcp")]) == 1)
        }
    }

    @Test func unparsableLinesAreStoredAsTextAndCounted() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            try await send(port: server.tcpAddress!.port!, "42 is the answer\n<300>bad pri\n<13>1 - h a - - - fine\n")
            #expect(try await eventually { store.events.count == 3 })
            #expect(store.events == [#"{"message":"42 is the answer","source_ip":"127.0.0.1"}"#, #"{"message":"<300>bad pri","source_ip":"127.0.0.1"}"#,
                                     #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"fine","source_ip":"127.0.0.1"}"#])
            let dimensions = [("input", "edge"), ("transport", "tcp")]
            #expect(metrics.counterTotal(label: "ferry_input_syslog_parse_failures_total", dimensions: dimensions + [("kind", "missing_pri")]) == 1)
            #expect(metrics.counterTotal(label: "ferry_input_syslog_parse_failures_total", dimensions: dimensions + [("kind", "invalid_pri")]) == 1)
        }
    }

    @Test func aMalformedFrameClosesOnlyItsConnectionAndIsCounted() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let port = server.tcpAddress!.port!
            let good = try #require(connectLoopback(port: port))
            defer { close(good) }
            let bad = try #require(connectLoopback(port: port))
            defer { close(bad) }
            try write(bad, "<13>1 - h a - - - before\n0 <13>never\n")
            #expect(try await onThread { readUntilClosed(bad) })
            try write(good, "<13>1 - h a - - - still served\n")
            #expect(try await eventually { store.events.count == 2 })
            #expect(try store.events.compactMap { try fields($0)["message"] as? String }.sorted() == ["before", "still served"])
            #expect(metrics.counterTotal(label: "ferry_input_syslog_frames_refused_total",
                                         dimensions: [("input", "edge"), ("transport", "tcp"), ("reason", "invalid_octet_count")]) == 1)
        }
    }

    /// At the end of a stream an unterminated last line is still a message, and a cut octet-counted frame
    /// is refused and counted, with what came before it stored.
    @Test func theEndOfTheStreamEndsTheLastLineAndRefusesACutFrame() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let port = server.tcpAddress!.port!
            let lines = try #require(connectLoopback(port: port))
            defer { close(lines) }
            try write(lines, "<13>1 - h a - - - first\n<13>1 - h a - - - last without LF")
            shutdown(lines, Int32(SHUT_WR))
            let cut = try #require(connectLoopback(port: port))
            defer { close(cut) }
            try write(cut, "<13>1 - h a - - - kept\n40 <13>1 - h a - - - cut")
            shutdown(cut, Int32(SHUT_WR))
            #expect(try await eventually { store.events.count == 3 })
            #expect(try store.events.compactMap { try fields($0)["message"] as? String }.sorted() == ["first", "kept", "last without LF"])
            #expect(try await eventually {
                metrics.counterTotal(label: "ferry_input_syslog_frames_refused_total",
                                     dimensions: [("input", "edge"), ("transport", "tcp"), ("reason", "truncated")]) == 1
            })
        }
    }

    @Test func aFullStorePausesTheSenderInsteadOfBufferingWithoutBound() async throws {
        let store = MemoryStore()
        try await withServer({ $0.limits.maxBatchBytes = 64 * 1024 }, store: store) { server in
            store.hold()
            let fd = try #require(connectLoopback(port: server.tcpAddress!.port!))
            defer { close(fd) }
            let line = Array("<13>1 - host app - - - \(String(repeating: "x", count: 100))\n".utf8)
            // Without backpressure the server would read all 256 MiB into memory; with it, the sender's
            // writes stop once the socket buffers (a few MiB) and two batches are full.
            let written = try await onThread { writeUntilBlocked(fd, line: line, limit: 256 << 20) }
            #expect(written < 48 << 20, "the server kept reading \(written) bytes while its store was held")
            #expect(store.started == 1)
            store.release()
            // Everything written (and the rest of a line cut by the full buffer) is stored once the store returns.
            try await onThread { try finishLine(fd, line: line, written: written) }
            let lines = (written + line.count - 1) / line.count
            #expect(try await eventually(timeout: .seconds(90)) { store.events.count == lines })
        }
    }

    @Test func connectionsAboveTheLimitWaitUntilOneCloses() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer({ $0.limits.maxConnections = 2 }, store: store, metrics: metrics) { server in
            let port = server.tcpAddress!.port!
            let first = try #require(connectLoopback(port: port))
            let second = try #require(connectLoopback(port: port))
            defer { close(second) }
            try write(first, "<13>1 - h a - - - first\n")
            try write(second, "<13>1 - h a - - - second\n")
            #expect(try await eventually { store.events.count == 2 })
            // The third connection is taken by the kernel's backlog, but the server does not accept it yet.
            let third = try #require(connectLoopback(port: port))
            defer { close(third) }
            try write(third, "<13>1 - h a - - - third\n")
            try write(second, "<13>1 - h a - - - marker\n")
            #expect(try await eventually { store.events.count == 3 })
            #expect(metrics.counterTotal(label: "ferry_input_syslog_connections_total", dimensions: [("input", "edge"), ("transport", "tcp")]) == 2)
            #expect(!store.events.contains { $0.contains("third") })
            close(first)
            #expect(try await eventually { store.events.count == 4 })
            #expect(store.events.last?.contains("third") == true)
        }
    }

    @Test func anIdleConnectionIsClosed() async throws {
        let store = MemoryStore()
        try await withServer({ $0.limits.idleTimeout = .milliseconds(200) }, store: store) { server in
            let fd = try #require(connectLoopback(port: server.tcpAddress!.port!))
            defer { close(fd) }
            try write(fd, "<13>1 - h a - - - then silence\n")
            #expect(try await onThread { readUntilClosed(fd) })
            #expect(store.events.count == 1)
        }
    }

    @Test func aFailingStoreClosesTheTCPConnectionAndIsCounted() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        store.fail(true)
        try await withServer(store: store, metrics: metrics) { server in
            let fd = try #require(connectLoopback(port: server.tcpAddress!.port!))
            defer { close(fd) }
            try write(fd, "<13>1 - h a - - - lost\n")
            #expect(try await onThread { readUntilClosed(fd) })
            #expect(metrics.counterTotal(label: "ferry_input_syslog_store_failures_total", dimensions: [("input", "edge"), ("transport", "tcp")]) == 1)
        }
    }

    @Test func tlsListenerTakesTLSAndRefusesPlainText() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        let store = MemoryStore()
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certs.appending("server.pem")).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certs.appending("server.key"), format: .pem)))
        try await withServer({ $0.tls = tls; $0.udp = nil }, store: store) { server in
            var client = TLSConfiguration.makeClientConfiguration()
            client.trustRoots = .file(certs.appending("ca.pem"))
            try await sendTLS(port: server.tcpAddress!.port!, configuration: client, "19 <13>1 - h a - - - x<13>1 - h a - - - over tls\n")
            #expect(try await eventually { store.events.count == 2 })
            #expect(try fields(store.events[1])["message"] as? String == "over tls")
            // Plain text to the TLS port is not a TLS handshake: the connection is closed, nothing stored.
            let plain = try #require(connectLoopback(port: server.tcpAddress!.port!))
            defer { close(plain) }
            try write(plain, "<13>1 - h a - - - plain\n")
            #expect(try await onThread { readUntilClosed(plain) })
            #expect(store.events.count == 2)
        }
    }

    @Test func udpDropsOfTheKernelAreCounted() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer({ $0.udpReceiveBufferBytes = 16 * 1024; $0.limits.maxBatchBytes = 1024; $0.tcp = nil }, store: store, metrics: metrics) { server in
            store.hold()
            let port = server.udpAddress!.port!
            let sent = 2000
            try await onThread { try sendDatagrams(port: port, count: sent) }
            let drops = { metrics.counterTotal(label: "ferry_input_syslog_udp_drops_total", dimensions: [("input", "edge"), ("transport", "udp")]) }
            #expect(try await eventually { drops() > 0 })
            store.release()
            // On loopback every datagram is either stored or counted as dropped.
            #expect(try await eventually { Int64(store.events.count) + drops() == Int64(sent) })
        }
    }
}

// MARK: Raw sockets

func write(_ fd: Int32, _ text: String) throws {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw POSIXError(.EIO) }
        offset += n
    }
}

/// Reads and discards until the peer closes; false if that does not happen within 30 s.
func readUntilClosed(_ fd: Int32) -> Bool {
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n == 0 { return true }
        if n < 0 { return errno == ECONNRESET }
    }
}

func send(port: Int, _ text: String) async throws {
    guard let fd = connectLoopback(port: port) else { throw POSIXError(.ECONNREFUSED) }
    defer { close(fd) }
    try write(fd, text)
}

/// Writes `line` again and again without blocking until the socket would block (or `limit` bytes); returns
/// the bytes written.
func writeUntilBlocked(_ fd: Int32, line: [UInt8], limit: Int) -> Int {
    let chunk = Array((0..<64).map { _ in line }.joined())
    var written = 0
    var idleRounds = 0
    while written < limit {
        let n = chunk[(written % chunk.count)...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if n > 0 {
            written += n
            idleRounds = 0
        } else if errno == EAGAIN || errno == EWOULDBLOCK {
            // Blocked: wait a little for the server to read, give up after a second of no progress.
            idleRounds += 1
            if idleRounds > 100 { break }
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pollfd, 1, 10)
        } else {
            break
        }
    }
    return written
}

/// Sends the rest of a line cut after `written` bytes (blocking), so the stream ends on a line boundary.
func finishLine(_ fd: Int32, line: [UInt8], written: Int) throws {
    let cut = written % line.count
    guard cut > 0 else { return }
    try write(fd, String(decoding: line[cut...], as: UTF8.self))
}

func sendDatagrams(port: Int, count: Int) throws {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    for n in 0..<count {
        let message = Array("<13>1 - h a - - - datagram \(n) \(String(repeating: "y", count: 200))".utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, message, message.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Connects with TLS, writes `text`, closes.
func sendTLS(port: Int, configuration: TLSConfiguration, _ text: String) async throws {
    let context = try NIOSSLContext(configuration: configuration)
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    try await channel.close().get()
}
