import FerryJournald
import FerryPipeline

extension ConfigurationLoader {
    /// `input.journald`: `units`, `identifiers`, `matches`, `directory` (default: the system journal),
    /// `start_at` (default `end`), and the stamp keys. The filters are checked as the input will use them, so
    /// `check-config` refuses what `run` would; whether the journal can be opened is checked only by `run`.
    static func journaldInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> (JournaldInputConfiguration, StampSettings) {
        let path = "input.journald"
        // `journald: {}` or `journald: true`: the system journal with the defaults.
        if case .scalar = node {
            guard try reader.bool(node, path: path) else {
                throw ConfigurationError("\(reader.location(node)): \(path) is false; leave input.journald out to not read the journal")
            }
            return (JournaldInputConfiguration(), StampSettings())
        }
        let j = try reader.mapping(node, path: path, keys: stampKeys.union(["units", "identifiers", "matches", "directory", "start_at"]))
        var c = JournaldInputConfiguration()
        if let v = j["units"] { c.units = try reader.strings(v, path: "\(path).units") }
        if let v = j["identifiers"] { c.identifiers = try reader.strings(v, path: "\(path).identifiers") }
        if let v = j["matches"] { c.matches = try reader.strings(v, path: "\(path).matches") }
        if let v = j["directory"] {
            let directory = try reader.string(v, path: "\(path).directory")
            guard directory.hasPrefix("/") else {
                throw ConfigurationError("\(reader.location(v)): \(path).directory is \"\(directory)\"; write it as an absolute path, or leave it out to read the system journal")
            }
            c.source = .directory(directory)
        }
        if let v = j["start_at"] {
            c.startAt = try reader.choice(v, path: "\(path).start_at", JournaldInputConfiguration.StartAt.allCases.map(\.rawValue)).flatMap(JournaldInputConfiguration.StartAt.init(rawValue:))!
        }
        do {
            try c.validate()
        } catch {
            throw ConfigurationError("\(reader.location(node)): \(path): \(error.message)")
        }
        return (c, try stamp(j, path: path, reader: reader))
    }

    /// The quick flag `--journald`: reads the system journal with the defaults, unless the configuration already
    /// has `input.journald` (then it is kept as configured).
    package static func journald(_ enabled: Bool, into configuration: inout AgentConfiguration) {
        guard enabled, !configuration.inputs.contains(where: { if case .journald = $0.source { true } else { false } }) else { return }
        configuration.inputs.append(InputConfiguration(.journald(JournaldInputConfiguration())))
    }
}
