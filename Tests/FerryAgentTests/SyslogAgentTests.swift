import FerryTestSupport
import Foundation
import Testing

/// util-linux `logger` against a real `ferry` started with `--syslog` and `--relp`, events read back from the
/// file output.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SyslogAgentTests {
    @Test func loggerOverTCPAndUDPInBothRFCsIsStoredWithItsFields() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-syslog-agent")
        defer { dir.remove() }
        let out = dir.appending("out")
        let port = freePort()
        let ferry = FerryProcess(name: "syslog", dir: dir, extra: ["--syslog", "127.0.0.1:\(port)", "--relp", "127.0.0.1:\(freePort())", "--output-file", out])
        defer { ferry.terminate() }
        try await ferry.start()
        #expect(try String(contentsOfFile: ferry.log, encoding: .utf8).contains("Send syslog:  tcp://127.0.0.1:\(port) and udp://127.0.0.1:\(port)"))

        let target = ["-n", "127.0.0.1", "-P", String(port)]
        let sends: [(arguments: [String], text: String)] = [
            (["-T", "--rfc5424", "--octet-count", "--sd-id", "origin@32473", "--sd-param", #"ip="10.0.0.1""#, "--msgid", "M1"], "tcp 5424 octets"),
            (["-T", "--rfc5424"], "tcp 5424 newline"),
            (["-T", "--rfc3164"], "tcp 3164"),
            (["-d", "--rfc5424", "--msgid", "U1"], "udp 5424"),
            (["-d", "--rfc3164"], "udp 3164"),
        ]
        for send in sends {
            try await runLogger(target + send.arguments + ["-t", "myapp", "-p", "local3.warning", send.text])
        }
        #expect(try await eventually(timeout: .seconds(30)) { try outputEvents(out).count >= sends.count })
        let events = try outputEvents(out)
        #expect(events.count == sends.count)
        let byText = Dictionary(try events.map { event -> (String, [String: Any]) in
            let object = try #require(JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
            return (object["message"] as? String ?? "", object)
        }, uniquingKeysWith: { first, _ in first })
        for send in sends {
            let event = try #require(byText[send.text], "\(send.text) not stored: \(events)")
            #expect(event["appname"] as? String == "myapp", "\(send.text)")
            #expect(event["facility"] as? String == "local3" && event["severity"] as? String == "warning", "\(send.text)")
            #expect(event["source_ip"] as? String == "127.0.0.1", "\(send.text)")
            #expect((event["@timestamp"] as? String)?.hasSuffix("Z") == true, "\(send.text)")
            #expect(event["hostname"] != nil, "\(send.text)")
        }
        #expect(byText["tcp 5424 octets"]?["msgid"] as? String == "M1")
        #expect(byText["udp 5424"]?["msgid"] as? String == "U1")
        let sd = byText["tcp 5424 octets"]?["structured_data"] as? [String: Any]
        #expect((sd?["origin@32473"] as? [String: Any])?["ip"] as? String == "10.0.0.1")
        #expect(try await ferry.stop(SIGTERM) == 0)
    }

    /// rsyslog's omrelp streams into `--relp` while the `ferry` process is SIGKILLed and restarted, twice:
    /// every message is delivered (omrelp sends again what was not answered; duplicates are allowed and
    /// counted, losses are not).
    @Test(.enabled(if: Rsyslog.find() != nil, "rsyslog with omrelp not found: run tools/bootstrap"))
    func omrelpLosesNothingWhenFerryIsSigkilled() async throws {
        let rsyslog = try #require(Rsyslog.find())
        let dir = try TemporaryDirectory(prefix: "ferry-relp-kill")
        defer { dir.remove() }
        let out = dir.appending("out")
        let relpPort = freePort()
        let ferry = FerryProcess(name: "relp", dir: dir, extra: ["--relp", "127.0.0.1:\(relpPort)", "--output-file", out])
        defer { ferry.terminate() }
        try await ferry.start()
        let action = #"type="omrelp" target="127.0.0.1" port="\#(relpPort)" windowSize="256" timeout="10""#
        let rounds = 6, perRound = 500
        try await rsyslog.relaying(action: action) { inPort, log in
            for round in 0..<rounds {
                let lines = (0..<perRound).map { "id=r\(round)-\($0)" }
                try await runLogger(["-n", "127.0.0.1", "-P", String(inPort), "-T", "--rfc5424", "--octet-count", "-t", "kill"],
                                    input: lines.joined(separator: "\n") + "\n")
                if round == 1 || round == 3 {
                    // Killed while rsyslog streams; started again on the same port.
                    try await ferry.stop(SIGKILL)
                    try await ferry.start()
                }
            }
            let expected = Set((0..<rounds).flatMap { round in (0..<perRound).map { "id=r\(round)-\($0)" } })
            let complete = try await eventually(timeout: .seconds(90)) { Set(try outputEvents(out).compactMap(message)).isSuperset(of: expected) }
            let delivered = try outputEvents(out).compactMap(message)
            #expect(complete, "missing \(expected.subtracting(delivered).count) of \(expected.count); rsyslog's log:\n\(log())")
            print("omrelp under SIGKILL: \(expected.count) messages sent, \(delivered.count) delivered, \(delivered.count - Set(delivered).count) duplicates")
        }
        #expect(try await ferry.stop(SIGTERM) == 0)
    }

    @Test func aNonLoopbackSyslogAddressWithoutTLSIsRefused() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-syslog-agent")
        defer { dir.remove() }
        let config = dir.appending("ferry.yaml")
        try "input:\n  syslog:\n    address: 0.0.0.0:\(freePort())\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await run(builtProductsDirectory() + "/ferry", ["run", "--config", config, "--data-dir", dir.appending("data"), "--admin", "off"])
        #expect(result.status == 2)
        #expect(result.errors.contains("input.syslog.tcp 0.0.0.0:") && result.errors.contains("tls: false"))
    }
}

/// The events the file output wrote under `dir`, in file order.
func outputEvents(_ dir: String) throws -> [String] {
    guard let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
    return try files.filter { $0.hasSuffix(".ndjson") }.sorted().flatMap { file in
        try String(contentsOfFile: dir + "/" + file, encoding: .utf8).split(separator: "\n").map(String.init)
    }
}

/// The `message` of a stored event.
func message(_ event: String) -> String? {
    (try? JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])?["message"] as? String
}

/// Runs util-linux `logger` with `arguments`, and `input` on its standard input when given.
func runLogger(_ arguments: [String], input: String? = nil) async throws {
    let result = try await run("/usr/bin/logger", arguments, input: input.map { Data($0.utf8) })
    if result.status != 0 { throw TestError("logger exited with \(result.status): \(result.errors)") }
}
