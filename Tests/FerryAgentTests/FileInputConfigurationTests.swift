@testable import FerryAgent
import FerryFile
import FerryPipeline
import FerryTestSupport
import Foundation
import Testing

@Suite struct FileInputConfigurationTests {
    func error(_ yaml: String) -> String? {
        do {
            _ = try ConfigurationLoader.parse(yaml, environment: [:], source: "ferry.yaml")
            return nil
        } catch {
            return error.message
        }
    }

    @Test func theFileInputIsReadWithItsStampAndPrinted() throws {
        let yaml = """
        input:
          http: false
          file:
            paths: [/var/log/app/*.log, "${LOGS}/*.log"]
            exclude: [/var/log/app/debug.log]
            start_at: end
            format: json
            max_line_bytes: 64KiB
            multiline: { start_pattern: "^[0-9]{4}-", flush_timeout: 500ms }
            fields: { env: prod }
            add_timestamp: false
        """
        let c = try ConfigurationLoader.parse(yaml, environment: ["LOGS": "/srv/logs"])
        #expect(c.inputs.map(\.name) == ["file"])
        let input = try #require(c.inputs.first)
        guard case .file(let file) = input.source else { Issue.record("not a file input"); return }
        #expect(file.paths == ["/var/log/app/*.log", "/srv/logs/*.log"])
        #expect(file.exclude == ["/var/log/app/debug.log"])
        #expect(file.startAt == .end && file.format == .json && file.maxLineBytes == 65536)
        #expect(file.multiline == FileInputConfiguration.Multiline(startPattern: "^[0-9]{4}-", flushTimeout: .milliseconds(500)))
        #expect(input.stamp == StampSettings(addTimestamp: false, fields: [.init(key: "env", value: "prod")]))
        #expect(input.knowsHost, "events read on this host get its name")
        let printed = c.redactedYAML
        #expect(printed.contains("  file:\n    paths: [\"/var/log/app/*.log\", \"/srv/logs/*.log\"]\n"))
        #expect(printed.contains("multiline: { start_pattern: \"^[0-9]{4}-\", flush_timeout: 500ms }"))
        #expect(printed.contains("    add_timestamp: false\n    fields: { \"env\": \"prod\" }"))
        // What is printed reads back as the same configuration.
        #expect(try ConfigurationLoader.parse(printed, environment: [:]) == c)
    }

    @Test func badFileInputSettingsAreRefusedWithTheirKey() {
        #expect(error("input: { file: { exclude: [/x] } }")?.contains("input.file needs paths") == true)
        #expect(error("input: { file: { paths: [] } }")?.contains("input.file.paths is empty") == true)
        #expect(error("input: { file: { paths: [logs/*.log] } }")?.contains("write globs as absolute paths") == true)
        #expect(error("input: { file: { paths: [/x], start_at: middle } }")?.contains("accepted values: beginning, end") == true)
        #expect(error("input: { file: { paths: [/x], format: xml } }")?.contains("accepted values: text, json") == true)
        #expect(error("input: { file: { paths: [/x], multiline: { flush_timeout: 1s } } }")?.contains("needs start_pattern") == true)
        #expect(error("input: { file: { paths: [/x], multiline: { start_pattern: \"([\" } } }")?.contains("ferry.yaml:1") == true)
        #expect(error("input: { file: { paths: [/x], follow: true } }")?.contains("unknown key input.file.follow") == true)
        #expect(error("input: { file: { paths: [/x], fields: { host: h } } }")?.contains("cannot set host") == true)
    }

    @Test func tailAddsGlobsToTheFileInputOrMakesOne() throws {
        var c = AgentConfiguration.embeddedDefault()
        ConfigurationLoader.tail(["/var/log/a/*.log", "b.log"], into: &c)
        #expect(c.inputs.map(\.name) == ["http", "file"])
        guard case .file(let file) = c.inputs[1].source else { Issue.record("no file input"); return }
        let cwd = FileManager.default.currentDirectoryPath
        #expect(file.paths == ["/var/log/a/*.log", (cwd == "/" ? "/" : cwd + "/") + "b.log"])
        ConfigurationLoader.tail(["/var/log/a/*.log", "/c/*.log"], into: &c)
        guard case .file(let more) = c.inputs[1].source else { Issue.record("no file input"); return }
        #expect(more.paths.count == 3, "a glob given twice is followed once")
    }
}
