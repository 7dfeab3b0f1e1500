@testable import FerryAgent
import FerryJournald
import FerryPipeline
import FerryTestSupport
import Foundation
import Testing

@Suite struct JournaldInputConfigurationTests {
    func error(_ yaml: String) -> String? {
        do {
            _ = try ConfigurationLoader.parse(yaml, environment: [:], source: "ferry.yaml")
            return nil
        } catch {
            return error.message
        }
    }

    @Test func theJournaldInputIsReadWithItsStampAndPrinted() throws {
        let yaml = """
        input:
          http: false
          journald:
            units: [ssh, nginx.service]
            identifiers: [kernel]
            matches: ["_TRANSPORT=kernel"]
            directory: /var/log/journal
            start_at: beginning
            fields: { env: prod }
            add_timestamp: false
        """
        let c = try ConfigurationLoader.parse(yaml, environment: [:])
        #expect(c.inputs.map(\.name) == ["journald"])
        let input = try #require(c.inputs.first)
        guard case .journald(let journald) = input.source else { Issue.record("not a journald input"); return }
        #expect(journald.units == ["ssh", "nginx.service"])
        #expect(journald.identifiers == ["kernel"])
        #expect(journald.matches == ["_TRANSPORT=kernel"])
        #expect(journald.source == .directory("/var/log/journal"))
        #expect(journald.startAt == .beginning)
        #expect(input.stamp == StampSettings(addTimestamp: false, fields: [.init(key: "env", value: "prod")]))
        #expect(input.knowsHost, "entries read on this host get its name")
        let printed = c.redactedYAML
        #expect(printed.contains("  journald:\n    directory: \"/var/log/journal\"\n"))
        #expect(printed.contains("    start_at: beginning\n    add_timestamp: false\n    fields: { \"env\": \"prod\" }"))
        // What is printed reads back as the same configuration.
        #expect(try ConfigurationLoader.parse(printed, environment: [:]) == c)
    }

    @Test func theDefaultsAreTheSystemJournalFromItsEnd() throws {
        let c = try ConfigurationLoader.parse("input: { http: false, journald: {} }", environment: [:])
        guard case .journald(let journald) = c.inputs.last?.source else { Issue.record("no journald input"); return }
        #expect(journald == JournaldInputConfiguration())
        #expect(journald.source == .system && journald.startAt == .end)
        let printed = c.redactedYAML
        #expect(try ConfigurationLoader.parse(printed, environment: [:]) == c)
    }

    @Test func badJournaldSettingsAreRefusedWithTheirKey() {
        #expect(error("input: { journald: { start_at: middle } }")?.contains("accepted values: beginning, end") == true)
        #expect(error("input: { journald: { directory: journal } }")?.contains("absolute path") == true)
        #expect(error("input: { journald: { matches: [NOEQUALS] } }")?.contains("input.journald") == true)
        #expect(error("input: { journald: { follow: true } }")?.contains("unknown key input.journald.follow") == true)
        #expect(error("input: { journald: { fields: { host: h } } }")?.contains("cannot set host") == true)
    }

    @Test func theJournaldFlagAddsTheSystemJournalOnce() throws {
        var c = AgentConfiguration.embeddedDefault()
        ConfigurationLoader.journald(false, into: &c)
        #expect(c.inputs.map(\.name) == ["http"])
        ConfigurationLoader.journald(true, into: &c)
        ConfigurationLoader.journald(true, into: &c)
        #expect(c.inputs.map(\.name) == ["http", "journald"])
    }
}
