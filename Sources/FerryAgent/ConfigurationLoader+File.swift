import FerryFile
import FerryPipeline
import FoundationEssentials

extension ConfigurationLoader {
    /// `input.file`: `paths` (required), `exclude`, `start_at`, `format`, `max_line_bytes`, `multiline`
    /// (`start_pattern`, `flush_timeout`), and the stamp keys. Checked as the input will use it (absolute
    /// globs, a start pattern that compiles), so `check-config` refuses what `run` would.
    static func fileInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> (FileInputConfiguration, StampSettings) {
        let path = "input.file"
        let f = try reader.mapping(node, path: path, keys: stampKeys.union(["paths", "exclude", "start_at", "format", "max_line_bytes", "multiline"]))
        guard let pathsNode = f["paths"] else { throw ConfigurationError("\(reader.location(node)): \(path) needs paths, a list of absolute globs such as /var/log/app/*.log") }
        let paths = try reader.strings(pathsNode, path: "\(path).paths")
        guard !paths.isEmpty else { throw ConfigurationError("\(reader.location(pathsNode)): \(path).paths is empty; list at least one glob") }
        for glob in paths where !glob.hasPrefix("/") {
            throw ConfigurationError("\(reader.location(pathsNode)): \(path).paths has \"\(glob)\"; write globs as absolute paths")
        }
        var c = FileInputConfiguration(paths: paths)
        if let v = f["exclude"] {
            c.exclude = try reader.strings(v, path: "\(path).exclude")
            for glob in c.exclude where !glob.hasPrefix("/") {
                throw ConfigurationError("\(reader.location(v)): \(path).exclude has \"\(glob)\"; write globs as absolute paths")
            }
        }
        if let v = f["start_at"] {
            c.startAt = try reader.choice(v, path: "\(path).start_at", FileInputConfiguration.StartAt.allCases.map(\.rawValue)).flatMap(FileInputConfiguration.StartAt.init(rawValue:))!
        }
        if let v = f["format"] {
            c.format = try reader.choice(v, path: "\(path).format", FileFormat.allCases.map(\.rawValue)).flatMap(FileFormat.init(rawValue:))!
        }
        if let v = f["max_line_bytes"] { c.maxLineBytes = try reader.bytes(v, path: "\(path).max_line_bytes") }
        if let multiline = f["multiline"] {
            let m = try reader.mapping(multiline, path: "\(path).multiline", keys: ["start_pattern", "flush_timeout"])
            guard let pattern = m["start_pattern"] else {
                throw ConfigurationError("\(reader.location(multiline)): \(path).multiline needs start_pattern, the POSIX extended regular expression of a line that starts an event")
            }
            var settings = FileInputConfiguration.Multiline(startPattern: try reader.string(pattern, path: "\(path).multiline.start_pattern"))
            if let v = m["flush_timeout"] { settings.flushTimeout = try milliseconds(v, path: "\(path).multiline.flush_timeout", reader: reader) }
            c.multiline = settings
        }
        do {
            _ = try c.readingSettings()
        } catch {
            throw ConfigurationError("\(reader.location(node)): \(path): \(error.message)")
        }
        return (c, try stamp(f, path: path, reader: reader))
    }

    /// `500ms`, `5s`, `1m`: a duration kept to the millisecond (`Reader.seconds` rounds up to seconds).
    static func milliseconds(_ node: Node, path: String, reader: Reader) throws(ConfigurationError) -> Duration {
        let text = try reader.string(node, path: path)
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(text)
        var factor = 1000.0
        for (suffix, f) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            factor = f
            break
        }
        guard let value = Double(number), value > 0, value * factor >= 1 else {
            throw ConfigurationError("\(reader.location(node)): \(path) is \"\(text)\"; give a duration such as 500ms, 5s or 1m")
        }
        return .milliseconds(Int64((value * factor).rounded(.up)))
    }

    /// The quick flag `--tail GLOB` (repeatable): the globs are added to `input.file.paths`, or make a file
    /// input with the defaults. A relative glob is taken from the current directory.
    package static func tail(_ globs: [String], into configuration: inout AgentConfiguration) {
        guard !globs.isEmpty else { return }
        let directory = FileManager.default.currentDirectoryPath
        let absolute = globs.map { $0.hasPrefix("/") ? $0 : (directory == "/" ? "/" : directory + "/") + $0 }
        if let index = configuration.inputs.firstIndex(where: { if case .file = $0.source { true } else { false } }),
           case .file(var file) = configuration.inputs[index].source {
            file.paths += absolute.filter { !file.paths.contains($0) }
            configuration.inputs[index].source = .file(file)
        } else {
            configuration.inputs.append(InputConfiguration(.file(FileInputConfiguration(paths: absolute))))
        }
    }
}
