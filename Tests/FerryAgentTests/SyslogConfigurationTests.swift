@testable import FerryAgent
import FerryPipeline
import FerryIngest
import FerrySyslog
import Testing

@Suite struct SyslogConfigurationTests {
    func error(_ yaml: String) -> String? {
        do {
            _ = try ConfigurationLoader.parse(yaml, environment: [:], source: "ferry.yaml")
            return nil
        } catch {
            return error.message
        }
    }

    @Test func syslogAndRELPInputsAreReadPrintedAndReadBack() throws {
        let yaml = """
        input:
          syslog:
            tcp: 0.0.0.0:6514
            udp: 127.0.0.1:5514
            tls: { certificate: /etc/ferry/server.pem, key: /etc/ferry/server.key }
            max_message_size: 128KiB
            max_connections: 50
            idle_timeout: 10m
            fields: { site: edge-1 }
          relp:
            address: 127.0.0.1:2514
            add_timestamp: false
        """
        let c = try ConfigurationLoader.parse(yaml, environment: [:])
        #expect(c.inputs.map(\.name) == ["http", "syslog", "relp"])
        let syslog = try #require(c.syslog)
        #expect(syslog.tcp == .init(host: "0.0.0.0", port: 6514) && syslog.udp == .init(host: "127.0.0.1", port: 5514))
        #expect(syslog.tls == IngestConfiguration.TLS(identity: .pem(certificate: "/etc/ferry/server.pem", key: "/etc/ferry/server.key")))
        #expect(syslog.limits.maxMessageSize == 128 << 10 && syslog.limits.maxConnections == 50 && syslog.limits.idleTimeout == .seconds(600))
        #expect(c.inputs[1].stamp.fields == [.init(key: "site", value: "edge-1")])
        #expect(c.relp == RELPInputSettings(address: .init(host: "127.0.0.1", port: 2514)))
        #expect(c.inputs[2].stamp.addTimestamp == false)
        let reread = try ConfigurationLoader.parse(c.redactedYAML, environment: [:])
        #expect(reread.syslog == c.syslog && reread.relp == c.relp && Array(reread.inputs.dropFirst()) == Array(c.inputs.dropFirst()))
    }

    @Test func addressMeansTCPAndUDPOnOnePort() throws {
        let c = try ConfigurationLoader.parse("input: { syslog: { address: 127.0.0.1:1514 } }", environment: [:])
        #expect(c.syslog?.tcp == .init(host: "127.0.0.1", port: 1514) && c.syslog?.udp == .init(host: "127.0.0.1", port: 1514))
        let tcpOnly = try ConfigurationLoader.parse("input: { syslog: { tcp: 127.0.0.1:1514 } }", environment: [:])
        #expect(tcpOnly.syslog?.udp == nil)
        #expect(error("input: { syslog: { address: 127.0.0.1:1, udp: 127.0.0.1:2 } }")?.contains("address and tcp/udp") == true)
        #expect(error("input: { syslog: { adress: 127.0.0.1:1 } }")?.contains("input.syslog.adress") == true)
        #expect(error("input: { relp: { max_message_size: lots } }")?.contains("input.relp.max_message_size") == true)
        #expect(error("input: { relp: { tls: true } }")?.contains("input.relp.tls: true needs an identity") == true)
    }

    @Test func aNonLoopbackListenerNeedsTLSOrAnExplicitTLSFalse() throws {
        let plain = try ConfigurationLoader.parse("input: { syslog: { address: 0.0.0.0:514 } }", environment: [:])
        #expect(throws: ConfigurationError.self) { try plain.syslog!.serverConfiguration(name: "syslog") }
        let allowed = try ConfigurationLoader.parse("input: { syslog: { address: 0.0.0.0:514, tls: false }, relp: { address: 0.0.0.0:2514, tls: false } }", environment: [:])
        #expect(try allowed.syslog!.serverConfiguration(name: "syslog").udp == ListenAddress(host: "0.0.0.0", port: 514))
        #expect(try allowed.relp!.serverConfiguration(name: "relp").address == ListenAddress(host: "0.0.0.0", port: 2514))
        // UDP has no TLS: a TLS block secures TCP only, and a non-loopback UDP listener still needs tls: false.
        var tls = RELPInputSettings(address: .init(host: "0.0.0.0", port: 2514))
        tls.tls = .init(identity: .pem(certificate: "/nonexistent.pem", key: "/nonexistent.key"))
        #expect(throws: ConfigurationError.self) { try tls.serverConfiguration(name: "relp") }  // past the rule, at the files
        var udp = SyslogInputSettings(address: .init(host: "0.0.0.0", port: 514))
        udp.tls = tls.tls
        #expect(throws: ConfigurationError.self) { try udp.serverConfiguration(name: "syslog") }
    }
}
