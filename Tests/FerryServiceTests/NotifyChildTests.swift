import FerryService
import FerryTestSupport
import Foundation
import Logging
import Testing

/// A datagram socket of the test's own, standing in for systemd's notify socket.
final class NotifyListener {
    let descriptor: Int32
    /// The value for `NOTIFY_SOCKET`.
    let name: String

    /// Binds a file-system socket under `directory`, or an abstract one when `directory` is nil.
    init(directory: String?) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(descriptor >= 0)
        name = directory.map { $0 + "/notify" } ?? "@ferry-test-notify-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let address = try NotifySocketAddress(name)
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: address.pathBytes) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + address.pathBytes.count + (address.isAbstract ? 0 : 1)
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(length)) }
        }
        try #require(bound == 0, "bind \(name): \(String(cString: strerror(errno)))")
    }

    deinit { close(descriptor) }

    /// The next datagram, or nil if none came within `timeout`.
    func next(timeout: Duration = .seconds(20)) async throws -> String? {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            let n = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n >= 0 { return String(decoding: buffer[..<n], as: UTF8.self) }
            try await Task.sleep(for: .milliseconds(5))  // polling interval of a condition with a deadline
        }
        return nil
    }

    /// Datagrams until one satisfies `last` (included), or nil if none did within `timeout` (a steady
    /// stream of other datagrams, such as watchdog pings, does not extend it).
    func messages(timeout: Duration = .seconds(30), until last: (String) -> Bool) async throws -> [String]? {
        let deadline = ContinuousClock.now + timeout
        var received: [String] = []
        while ContinuousClock.now < deadline, let message = try await next(timeout: deadline - ContinuousClock.now) {
            received.append(message)
            if last(message) { return received }
        }
        return nil
    }
}

@Suite(.timeLimit(.minutes(1)))
struct NotifyChildTests {
    let executable = builtProductsDirectory() + "/ferry-notify-child"

    func start(_ listener: NotifyListener, arguments: [String] = []) throws -> ChildProcess {
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-notify-child first (swift build)")
        // WatchdogSec=1s: a check every half second.
        return try ChildProcess(executable: executable, arguments: arguments,
                                environment: ["NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "1000000"])
    }

    @Test(arguments: [false, true])
    func aChildSendsReadyWatchdogReloadingAndStoppingToItsNotifySocket(abstract: Bool) async throws {
        let directory = try TemporaryDirectory(prefix: "ferry-notify")
        defer { directory.remove() }
        do {
            let listener = try NotifyListener(directory: abstract ? nil : directory.path)
            let child = try start(listener)
            var exited = false
            defer { if !exited { child.kill() } }

            #expect(try await listener.next() == "READY=1\nSTATUS=ready")
            // The first ping carries the status the monitor was given.
            #expect(try await listener.next() == "WATCHDOG=1\nSTATUS=ready; queue 0 records")
            #expect(try await listener.next() == "WATCHDOG=1")

            let before = monotonicNanoseconds() / 1000
            kill(child.pid, SIGHUP)
            let reload = try #require(try await listener.messages(until: { $0.hasPrefix("READY=1") }))
                .filter { $0 != "WATCHDOG=1" }
            let after = monotonicNanoseconds() / 1000
            #expect(reload.count == 2)
            let fields = reload[0].split(separator: "\n").map(String.init)
            #expect(fields.first == "RELOADING=1")
            #expect(fields.last == "STATUS=reloading")
            let stamp = try #require(fields.first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst(15)) })
            #expect(stamp >= before && stamp <= after, "MONOTONIC_USEC is CLOCK_MONOTONIC in µs")
            #expect(reload[1] == "READY=1\nSTATUS=reloaded")

            kill(child.pid, SIGTERM)
            let rest = try #require(try await listener.messages(until: { $0.hasPrefix("STOPPING=1") }))
            #expect(rest.last == "STOPPING=1\nSTATUS=stopping")
            #expect(rest.dropLast().allSatisfy { $0 == "WATCHDOG=1" })
            let status = child.waitForExit()
            exited = true
            #expect(status == 0)
            #expect(child.lines.last == "stopped")
        }
    }

    @Test func aReadyDroppedByAFullSocketIsSentAgainInOrderAndPingsAreNot() async throws {
        let directory = try TemporaryDirectory(prefix: "ferry-notify-full")
        defer { directory.remove() }
        let listener = try NotifyListener(directory: directory.path)
        let notifier = try ServiceNotifier(address: NotifySocketAddress(listener.name), logger: Logger(label: "test"))
        // A listener that does not read: pings fill its queue (net.unix.max_dgram_qlen) until one fails.
        var pings = 0
        while notifier.notify(.watchdog(status: nil)) {
            pings += 1
            try #require(pings < 100_000, "the socket's queue never filled")
        }
        #expect(!notifier.notify(.reloading(monotonicMicroseconds: 7, status: nil)))
        #expect(!notifier.notify(.ready(status: nil)))
        #expect(!notifier.sendPending(), "still full")

        // The listener reads again: the next tick delivers both, RELOADING before READY; the lost ping stays lost.
        for _ in 0 ..< pings { #expect(try await listener.next(timeout: .seconds(5)) == "WATCHDOG=1") }
        #expect(notifier.sendPending())
        #expect(try await listener.next(timeout: .seconds(5)) == "RELOADING=1\nMONOTONIC_USEC=7")
        #expect(try await listener.next(timeout: .seconds(5)) == "READY=1")
        #expect(try await listener.next(timeout: .milliseconds(200)) == nil)
        // Nothing left over: a new one-shot goes out at once.
        #expect(notifier.notify(.stopping(status: nil)))
        #expect(try await listener.next(timeout: .seconds(5)) == "STOPPING=1")
    }

    @Test func aStalledWriterStopsThePingsAndSaysWhyInTheStatus() async throws {
        let directory = try TemporaryDirectory(prefix: "ferry-notify")
        defer { directory.remove() }
        do {
            let listener = try NotifyListener(directory: directory.path)
            // The fake writer loops for 3 checks, then has work waiting and never takes it.
            let child = try start(listener, arguments: ["--stall-writer-after", "3"])
            var exited = false
            defer { if !exited { child.kill() } }

            #expect(try await child.waitForLines(timeout: .seconds(30)) { $0.filter { $0.hasPrefix("check withheld") }.count >= 3 })
            kill(child.pid, SIGTERM)
            let messages = try #require(try await listener.messages(until: { $0.hasPrefix("STOPPING=1") }))
            #expect(child.waitForExit() == 0)
            exited = true

            let checks = child.lines.filter { $0.hasPrefix("check") }
            #expect(Array(checks.prefix(3)) == ["check ping", "check ping", "check ping"])
            #expect(checks.dropFirst(3).allSatisfy { $0.hasPrefix("check withheld queue writer idle with work waiting") })
            // Exactly the three pings, then the reason, and no ping after it.
            #expect(messages.first == "READY=1\nSTATUS=ready")
            #expect(Array(messages[1...3]) == ["WATCHDOG=1\nSTATUS=ready; queue 0 records", "WATCHDOG=1", "WATCHDOG=1"])
            #expect(messages[4].hasPrefix("STATUS=watchdog withheld: queue writer idle with work waiting for "))
            #expect(messages.dropFirst(5) == ["STOPPING=1\nSTATUS=stopping"])
        }
    }

    @Test func withoutNotifySocketTheChildHasNobodyToTell() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: executable), "build ferry-notify-child first (swift build)")
        let child = try ChildProcess(executable: executable, arguments: [], environment: [:])
        #expect(child.waitForExit() == 3 << 8)
        #expect(child.lines == ["no NOTIFY_SOCKET"])
    }
}
