import FerryTestSupport
import FerryWire
import Foundation
import Testing

/// The validator against Nicolas Seriot's JSONTestSuite (`test_parsing`), a corpus no one on this project
/// wrote: every `y_` accepted, every `n_` refused, every `i_` answered either way without a crash or a hang.
///
/// The corpus is not copied into the repository: it is read from `shared/testdata/JSONTestSuite/test_parsing`
/// in the nearest directory above the package root that has it (CI clones the repository next to
/// `shared/`; a git worktree may sit deeper), or from `FERRY_JSONTESTSUITE`. When it is missing the test
/// is skipped, and the run says so with where it looked (a clone on its own has no `shared/`);
/// `FERRY_REQUIRE_TESTDATA=1` makes a missing corpus a failure instead.
@Suite struct JSONTestSuiteTests {
    static let corpus = JSONTestSuiteCorpus.find()
    static let requireCorpus = ProcessInfo.processInfo.environment["FERRY_REQUIRE_TESTDATA"] == "1"

    @Test(.timeLimit(.minutes(1)),
          .enabled(if: corpus != nil || requireCorpus,
                   "JSONTestSuite not found in \(JSONTestSuiteCorpus.relativePath) above the package (FERRY_JSONTESTSUITE=DIR names it)"))
    func everyParsingCaseIsAnsweredAsTheSuiteSays() throws {
        let directory = try #require(Self.corpus, """
            JSONTestSuite not found: looked for \(JSONTestSuiteCorpus.relativePath) in every directory above \(packageRoot()) \
            (set FERRY_JSONTESTSUITE=DIR to name it)
            """)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        let counts = Dictionary(grouping: names, by: { $0.prefix(2) }).mapValues(\.count)
        // A truncated copy must not pass quietly: the suite has 95 y_, 188 n_ and 35 i_ cases.
        #expect(counts["y_", default: 0] >= 90 && counts["n_", default: 0] >= 180 && counts["i_", default: 0] >= 30, "\(counts) in \(directory)")

        var wrong: [String] = []
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
            let value = bytes.withUnsafeBytes { (raw) in Result { () throws(JSONSyntaxError) in try JSONValidator.validateValue(raw) } }
            let object = bytes.withUnsafeBytes { (raw) in Result { () throws(JSONSyntaxError) in try JSONValidator.validateObject(raw) } }
            let isObject = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) } == UInt8(ascii: "{")
            switch name.prefix(2) {
            case "y_":
                if case .failure(let error) = value { wrong.append("\(name): refused (\(error))") }
                // As an event: an object is accepted; any other value is refused, saying an object was expected.
                switch (isObject, object) {
                case (true, .failure(let error)): wrong.append("\(name): refused as an event (\(error))")
                case (false, .success): wrong.append("\(name): accepted as an event although it is no object")
                case (false, .failure(let error)) where !error.reason.contains("expected a JSON object"):
                    wrong.append("\(name): refused as an event with an unclear reason (\(error.reason))")
                default: break
                }
            case "n_":
                if case .success = value { wrong.append("\(name): accepted") }
                if case .success = object { wrong.append("\(name): accepted as an event") }
            default:
                // Implementation-defined: either answer will do; what counts is that there is one.
                _ = (value, object)
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) cases answered against the suite:\n\(wrong.joined(separator: "\n"))")
    }
}

/// Where the JSONTestSuite corpus is on this machine, if anywhere.
enum JSONTestSuiteCorpus {
    static let relativePath = "shared/testdata/JSONTestSuite/test_parsing"

    static func find() -> String? {
        if let named = ProcessInfo.processInfo.environment["FERRY_JSONTESTSUITE"], !named.isEmpty {
            return FileManager.default.fileExists(atPath: named) ? named : nil
        }
        var directory = URL(fileURLWithPath: packageRoot())
        while directory.path != "/" {
            directory.deleteLastPathComponent()
            let candidate = directory.appendingPathComponent(relativePath).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return nil
    }
}
