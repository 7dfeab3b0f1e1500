import Logging
import FerryService
import Testing

@Suite struct NotifyProtocolTests {
    @Test func notificationsEncodeAsNewlineSeparatedAssignments() {
        #expect(ServiceNotification.ready(status: nil).encoded == "READY=1")
        #expect(ServiceNotification.ready(status: "queue 3 records").encoded == "READY=1\nSTATUS=queue 3 records")
        #expect(ServiceNotification.stopping(status: nil).encoded == "STOPPING=1")
        #expect(ServiceNotification.watchdog(status: nil).encoded == "WATCHDOG=1")
        #expect(ServiceNotification.watchdog(status: "ok").encoded == "WATCHDOG=1\nSTATUS=ok")
        #expect(ServiceNotification.status("draining").encoded == "STATUS=draining")
        #expect(ServiceNotification.reloading(monotonicMicroseconds: 1_234_567, status: nil).encoded
            == "RELOADING=1\nMONOTONIC_USEC=1234567")
    }

    @Test func aStatusWithLineBreaksStaysOneAssignment() {
        // A newline would start an assignment of its own: "READY=1" smuggled in a status must stay text.
        #expect(ServiceNotification.status("bad\nREADY=1\r\nx").encoded == "STATUS=bad READY=1 x")
    }

    @Test func aPathSocketIsSentWithoutItsNulAndAnAbstractOneWithALeadingNul() throws {
        let path = try NotifySocketAddress("/run/systemd/notify")
        #expect(path.pathBytes == Array("/run/systemd/notify".utf8))
        #expect(!path.isAbstract)
        let abstract = try NotifySocketAddress("@/org/freedesktop/systemd1/notify/123")
        #expect(abstract.pathBytes == [0] + Array("/org/freedesktop/systemd1/notify/123".utf8))
        #expect(abstract.isAbstract)
    }

    @Test func unusableSocketAddressesAreRefusedWithTheValue() {
        for value in ["", "run/notify", "vsock:2:1234", "@", "/" + String(repeating: "a", count: 107),
                      "@" + String(repeating: "a", count: 108)] {
            #expect(throws: ServiceError.self, "\(value)") { try NotifySocketAddress(value) }
        }
        #expect((try? NotifySocketAddress("/" + String(repeating: "a", count: 106))) != nil)
        #expect((try? NotifySocketAddress("@" + String(repeating: "a", count: 107))) != nil)
        do {
            _ = try NotifySocketAddress("vsock:2:1234")
        } catch {
            #expect(error.code == .invalidEnvironment)
            #expect(error.message.contains("vsock:2:1234"))
        }
    }

    @Test func noNotifySocketMeansNoNotifier() throws {
        let logger = Logger(label: "test")
        #expect(try ServiceNotifier.fromEnvironment({ _ in nil }, logger: logger) == nil)
        #expect(try ServiceNotifier.fromEnvironment({ _ in "" }, logger: logger) == nil)
        #expect(try ServiceNotifier.fromEnvironment({ _ in "/tmp/x" }, logger: logger)?.address.isAbstract == false)
    }

    @Test func theWatchdogIsReadFromWatchdogUsecForThisProcessOnly() throws {
        func read(_ variables: [String: String]) throws -> Watchdog.Configuration? {
            try Watchdog.Configuration.fromEnvironment({ variables[$0] }, pid: 42)
        }
        #expect(try read([:]) == nil)
        #expect(try read(["WATCHDOG_USEC": "60000000"])?.timeout == 60_000_000_000)
        #expect(try read(["WATCHDOG_USEC": "60000000"])?.pingInterval == 30_000_000_000)
        #expect(try read(["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"])?.timeout == 60_000_000_000)
        // Meant for another process (this one inherited the variables).
        #expect(try read(["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"]) == nil)
        #expect(throws: ServiceError.self) { try read(["WATCHDOG_USEC": "0"]) }
        #expect(throws: ServiceError.self) { try read(["WATCHDOG_USEC": "60s"]) }
    }
}

