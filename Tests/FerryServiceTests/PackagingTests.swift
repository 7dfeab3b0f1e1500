import FerryAgent
import FerryTestSupport
import Foundation
import Testing

/// The package's files that Swift code can check: the configuration template against the embedded
/// default and the README, and the unit through `systemd-analyze verify`.
@Suite struct PackagingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func template(dataDirectory: String) throws -> String {
        try String(contentsOfFile: Self.root + "/tools/package/ferry.yaml.in", encoding: .utf8)
            .replacingOccurrences(of: "@DATA_DIR@", with: dataDirectory)
            .replacingOccurrences(of: "@CONFIG_PATH@", with: "/etc/ferry/ferry.yaml")
    }

    @Test func thePackagedConfigurationIsTheEmbeddedDefaultWithTheQueueInVarLib() throws {
        let parsed = try ConfigurationLoader.parse(template(dataDirectory: "/var/lib/ferry"), environment: [:], source: "ferry.yaml")
        #expect(parsed == AgentConfiguration.embeddedDefault(dataDirectory: "/var/lib/ferry"))
        // And with the usual directory it is the embedded default itself.
        #expect(try ConfigurationLoader.parse(template(dataDirectory: "./ferry-data"), environment: [:]) == .embeddedDefault())
    }

    @Test func everyKeyOfTheReadmesTableIsInThePackagedConfiguration() throws {
        let readme = try String(contentsOfFile: Self.root + "/README.md", encoding: .utf8)
        let text = try template(dataDirectory: "/var/lib/ferry")
        // Rows look like "| `output.kafka.brokers`, `.topic` | default | notes |": every name in the first cell.
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false)
        let header = try #require(lines.firstIndex { $0.hasPrefix("| Key |") }, "the README's configuration table")
        var names: [String] = []
        for line in lines[header...].dropFirst(2).prefix(while: { $0.hasPrefix("|") }) {
            let cell = line.split(separator: "|", omittingEmptySubsequences: true).first ?? ""
            for part in cell.split(separator: "`").enumerated() where part.offset % 2 == 1 {
                if let last = part.element.split(separator: ".").last { names.append(String(last)) }
            }
        }
        #expect(names.count > 30)
        let missing = names.filter { !text.contains($0 + ":") && !text.contains($0 + " ") }
        #expect(missing.isEmpty, "keys of the README's table not in tools/package/ferry.yaml.in: \(missing)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"),
                   "systemd-analyze (Debian package systemd) is not installed"))
    func theUnitAndTheCapabilityDropInPassSystemdAnalyzeVerify() throws {
        let child = try ChildProcess(executable: Self.root + "/tools/package/verify-unit", arguments: [])
        #expect(child.waitForExit() == 0, "run tools/package/verify-unit to see why")
        #expect(child.lines.last?.contains("pass systemd-analyze verify") == true)
    }
}
