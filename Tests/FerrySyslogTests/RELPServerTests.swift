@testable import FerrySyslog
import FerryTestSupport
import Foundation
import MetricsTestKit
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing

/// The RELP server on real sockets on loopback, with a minimal RELP client written against librelp's frame
/// format and an in-memory store. rsyslog's `omrelp` as the client comes with the input seam (phase 2).
@Suite(.timeLimit(.minutes(2))) struct RELPServerTests {
    static let offer = "relp_version=0\nrelp_software=ferry-test\ncommands=syslog"

    func withServer(
        _ configure: (inout RELPServerConfiguration) -> Void = { _ in }, store: MemoryStore, metrics: TestMetrics = TestMetrics(),
        _ body: (RELPServer) async throws -> Void
    ) async throws {
        var configuration = RELPServerConfiguration(name: "rsyslog", address: ListenAddress(host: "127.0.0.1", port: 0))
        configure(&configuration)
        let server = try await RELPServer.bind(configuration: configuration, store: store.store, logger: quietLogger,
                                               utcOffset: SyslogParser.fixedUTCOffset(0), metricsFactory: metrics)
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    func opened(_ server: RELPServer) async throws -> RELPTestClient {
        let client = try RELPTestClient(port: server.address!.port!)
        try client.send(frame(1, "open", Self.offer))
        let answer = try await client.next()
        #expect(answer == .init(txnr: 1, command: "rsp", data: "200 OK\nrelp_version=0\nrelp_software=ferry\ncommands=syslog"))
        return client
    }

    @Test func aWindowOfMessagesIsAnsweredInOrderAfterItWasStored() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let client = try await opened(server)
            defer { client.close() }
            try client.send((2...201).map { frame($0, "syslog", "<13>1 2026-12-02T11:46:05Z h app - - - message \($0)") }.joined())
            for txnr in 2...201 {
                #expect(try await client.next() == .init(txnr: txnr, command: "rsp", data: "200 OK"))
            }
            // Every answered message is stored (the answer came after the store call returned).
            #expect(store.events.count == 200)
            #expect(try store.events.map { try fields($0)["message"] as? String } == (2...201).map { "message \($0)" })
            #expect(try fields(store.events[0])["source_ip"] as? String == "127.0.0.1")
            #expect(store.batchSizes.count < 200)
            #expect(metrics.counterTotal(label: "ferry_input_relp_messages_total", dimensions: [("input", "rsyslog")]) == 200)
        }
    }

    @Test func theAnswerWaitsForTheStoreAndLaterMessagesGoInOneBatch() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            let client = try await opened(server)
            defer { client.close() }
            store.hold()
            try client.send(frame(2, "syslog", "<13>first"))
            #expect(try await eventually { store.started == 1 })
            try client.send((3...51).map { frame($0, "syslog", "<13>later \($0)") }.joined())
            #expect(client.nothingReceived())
            store.release()
            for txnr in 2...51 {
                #expect(try await client.next() == .init(txnr: txnr, command: "rsp", data: "200 OK"))
            }
            #expect(store.batchSizes.first == 1)
            #expect(store.batchSizes.count < 50)
        }
    }

    @Test func closeIsAnsweredThenHintedThenTheConnectionCloses() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            let client = try await opened(server)
            defer { client.close() }
            try client.send(frame(2, "syslog", "<13>bye") + frame(3, "close", ""))
            #expect(try await client.next() == .init(txnr: 2, command: "rsp", data: "200 OK"))
            #expect(try await client.next() == .init(txnr: 3, command: "rsp", data: ""))
            #expect(try await client.next() == .init(txnr: 0, command: "serverclose", data: ""))
            #expect(try await client.next() == nil)
            #expect(store.events.count == 1)
        }
    }

    @Test func shutdownAnswersWhatWasTakenAndHintsServerclose() async throws {
        let store = MemoryStore()
        try await withServer(store: store) { server in
            let client = try await opened(server)
            defer { client.close() }
            store.hold()
            try client.send(frame(2, "syslog", "<13>in flight at shutdown"))
            #expect(try await eventually { store.started == 1 })
            async let stopped: Void = server.shutdown()
            store.release()
            #expect(try await client.next() == .init(txnr: 2, command: "rsp", data: "200 OK"))
            #expect(try await client.next() == .init(txnr: 0, command: "serverclose", data: ""))
            #expect(try await client.next() == nil)
            await stopped
            #expect(store.events.count == 1)
        }
    }

    @Test func aFailingStoreAnswersNothingAndEndsTheSession() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let client = try await opened(server)
            defer { client.close() }
            store.fail(true)
            try client.send(frame(2, "syslog", "<13>not stored"))
            #expect(try await client.next() == .init(txnr: 0, command: "serverclose", data: ""))
            #expect(try await client.next() == nil)
            #expect(metrics.counterTotal(label: "ferry_input_relp_store_failures_total", dimensions: [("input", "rsyslog")]) == 1)
        }
    }

    @Test func protocolErrorsAreAnsweredAndCounted() async throws {
        let store = MemoryStore()
        let metrics = TestMetrics()
        try await withServer(store: store, metrics: metrics) { server in
            let early = try RELPTestClient(port: server.address!.port!)
            defer { early.close() }
            try early.send(frame(1, "syslog", "<13>too early"))
            #expect(try await early.next() == .init(txnr: 1, command: "rsp", data: "500 syslog before open"))
            #expect(try await early.next() == .init(txnr: 0, command: "serverclose", data: ""))
            #expect(try await early.next() == nil)

            let garbage = try await opened(server)
            defer { garbage.close() }
            try garbage.send("2 syslog 99999999 x\n")
            #expect(try await garbage.next() == .init(txnr: 0, command: "serverclose", data: ""))
            #expect(try await garbage.next() == nil)

            #expect(metrics.counterTotal(label: "ferry_input_relp_frames_refused_total", dimensions: [("input", "rsyslog"), ("reason", "not_open")]) == 1)
            #expect(metrics.counterTotal(label: "ferry_input_relp_frames_refused_total", dimensions: [("input", "rsyslog"), ("reason", "too_large")]) == 1)
            #expect(store.events.isEmpty)
        }
    }

    @Test func relpOverTLS() async throws {
        let certs = try await makeTestCertificates()
        defer { certs.remove() }
        let store = MemoryStore()
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certs.appending("server.pem")).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certs.appending("server.key"), format: .pem)))
        try await withServer({ $0.tls = tls }, store: store) { server in
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(certs.appending("ca.pem"))
            let connection = try await TLSTestConnection.connect(port: server.address!.port!, configuration: configuration)
            try await connection.send(frame(1, "open", Self.offer) + frame(2, "syslog", "<13>1 - h a - - - secret") + frame(3, "close", ""))
            #expect(try await eventually { connection.received.hasSuffix("0 serverclose 0\n") })
            #expect(connection.received.contains("2 rsp 6 200 OK\n3 rsp 0\n"))
            #expect(try fields(store.events[0])["message"] as? String == "secret")
            try? await connection.close()
        }
    }
}

func frame(_ txnr: Int, _ command: String, _ data: String) -> String {
    data.isEmpty ? "\(txnr) \(command) 0\n" : "\(txnr) \(command) \(data.utf8.count) \(data)\n"
}

/// A blocking RELP client on a raw socket; reads happen on a thread of their own.
final class RELPTestClient: @unchecked Sendable {  // used by one test task at a time
    struct Frame: Equatable, CustomStringConvertible {
        let txnr: Int
        let command: String
        let data: String
        var description: String { "\(txnr) \(command) \(data.debugDescription)" }
    }

    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        guard let fd = connectLoopback(port: port) else { throw POSIXError(.ECONNREFUSED) }
        self.fd = fd
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) throws { try write(fd, text) }

    func close() { Glibc.close(fd) }

    /// The next frame from the server, or nil when it closed the connection.
    func next() async throws -> Frame? {
        try await onThread { try self.readFrame() }
    }

    private func readFrame() throws -> Frame? {
        let parser = RELPFrameParser(maxDataSize: 1 << 20)
        while true {
            switch buffer.withUnsafeBytes({ parser.next(in: $0) }) {
            case .frame(let txnr, let command, let data, let consumed):
                let frame = Frame(txnr: txnr, command: String(decoding: buffer[command], as: UTF8.self), data: String(decoding: buffer[data], as: UTF8.self))
                buffer.removeFirst(consumed)
                return frame
            case .malformed(let kind):
                throw RELPProtocolError(kind, "the server sent something that is not a RELP frame")
            case .needMoreData:
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = recv(fd, &chunk, chunk.count, 0)
                if n == 0 || (n < 0 && errno == ECONNRESET) { return nil }
                guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                buffer += chunk[..<n]
            }
        }
    }

    /// Nothing has arrived from the server (checked without waiting).
    func nothingReceived() -> Bool {
        var byte: UInt8 = 0
        return buffer.isEmpty && recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) < 0 && errno == EAGAIN
    }
}

/// A TLS client connection that collects what it receives.
final class TLSTestConnection: Sendable {
    private let channel: any Channel
    private let collected: Collector

    private init(channel: any Channel, collected: Collector) {
        self.channel = channel
        self.collected = collected
    }

    var received: String { collected.text.withLock { $0 } }

    static func connect(port: Int, configuration: TLSConfiguration) async throws -> TLSTestConnection {
        let context = try NIOSSLContext(configuration: configuration)
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(CollectingHandler(collector: collector))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TLSTestConnection(channel: channel, collected: collector)
    }

    func send(_ text: String) async throws { try await channel.writeAndFlush(ByteBuffer(string: text)).get() }

    func close() async throws { try await channel.close().get() }

    final class Collector: Sendable {
        let text = Mutex("")
    }

    final class CollectingHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let collector: Collector
        init(collector: Collector) { self.collector = collector }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data))
            collector.text.withLock { $0 += text }
        }
    }
}
