@testable import FerryIngest
import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// A running ingest on a free loopback port, in front of a queue in a temporary directory.
struct RunningIngest {
    let port: Int
    let queue: Queue
    let logs: RecordingLogHandler.Store
    let server: IngestServer

    var url: String { "http://127.0.0.1:\(port)/" }

    /// Events stored in the queue, in order.
    func storedEvents() throws -> [String] {
        var events: [String] = []
        var next: UInt64 = 0
        while true {
            let page = try queue.peek(from: next, maxRecords: 1000)
            if page.records.isEmpty { return events }
            next = page.nextSequence
            events += try page.records.flatMap { try $0.record.events().map { String(buffer: $0) } }
        }
    }
}

func withIngest<R>(
    _ configure: (inout IngestConfiguration) -> Void = { _ in },
    queueConfiguration: QueueConfiguration = QueueConfiguration(),
    stamp: EventStamp = .none,
    _ body: (RunningIngest) async throws -> R
) async throws -> R {
    let dir = try TemporaryDirectory(prefix: "ferry-ingest")
    defer { dir.remove() }
    let logs = RecordingLogHandler.Store()
    let queue = try Queue.open(at: dir.path, configuration: queueConfiguration, logger: logs.logger(label: "ferry.queue"))
    defer { queue.close() }
    var configuration = IngestConfiguration(port: 0)
    configure(&configuration)
    let server = try IngestServer(configuration: configuration, queue: queue, stamp: stamp, logger: logs.logger(label: "ferry.ingest"))
    return try await withServices([server]) {
        try await body(RunningIngest(port: await server.listeningPort(), queue: queue, logs: logs, server: server))
    }
}

/// curl, the real peer: returns the HTTP status (0 when no HTTP answer came) and the body.
func curl(_ arguments: [String], body: Data? = nil) async throws -> (status: Int, body: String, exit: Int32) {
    let out = try TemporaryDirectory(prefix: "ferry-curl")
    defer { out.remove() }
    var args = ["-sS", "--max-time", "20", "-o", out.appending("body"), "-w", "%{http_code}"]
    if let body {
        try body.write(to: URL(fileURLWithPath: out.appending("request")))
        args += ["--data-binary", "@" + out.appending("request")]
    }
    let result = try await run("/usr/bin/curl", args + arguments)
    let responseBody = (try? String(contentsOfFile: out.appending("body"), encoding: .utf8)) ?? ""
    return (Int(result.output) ?? 0, responseBody, result.status)
}

func gzipped(_ text: String, level: Int32 = Gzip.defaultLevel) -> Data {
    var out = ByteBuffer()
    Array(text.utf8).withUnsafeBytes { Gzip.compress($0, level: level, into: &out) }
    return Data(out.readableBytesView)
}

/// A raw TCP connection to loopback, with blocking calls meant to run through `onThread`.
final class RawConnection: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        guard let fd = connectLoopback(port: port) else { throw POSIXError(.ECONNREFUSED) }
        self.fd = fd
        var timeout = timeval(tv_sec: 15, tv_usec: 0)  // no read or write blocks a test forever
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends bytes; false once the peer has closed the connection.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Reads until the peer closes (or the receive timeout passes); returns what came.
    func readToEnd() -> [UInt8] {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return all }
            all += buffer[..<n]
        }
    }

    /// Reads until what came contains `marker` (or the peer closes, or the receive timeout passes).
    func read(until marker: String) -> String {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: all, as: UTF8.self).contains(marker) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            all += buffer[..<n]
        }
        return String(decoding: all, as: UTF8.self)
    }

    /// Ends the sending side (a half-close): the peer reads end of file, and may still answer.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func close() { Foundation.close(fd) }
}
