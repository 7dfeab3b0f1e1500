import ArgumentParser
import FerryAgent
import FerryForward
import FerryIngest
import Foundation
import Logging

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "A durable store-and-forward agent for events.",
        discussion: "With no configuration, `ferry run` takes events on 127.0.0.1:9800 and writes them under ./ferry-data/out.",
        version: Agent.version,
        subcommands: [Run.self, CheckConfig.self, Version.self]
    )
}

/// Options shared by the commands that read a configuration.
struct QuickFlags: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Queue directory (queue.path). Default ./ferry-data.")
    var dataDir: String?

    @Option(help: "Ingest address HOST:PORT (input.http.address). Default 127.0.0.1:9800.")
    var listen: String?

    @Option(help: "Admin address HOST:PORT, or off (admin.address). Default 127.0.0.1:9801.")
    var admin: String?

    @Option(help: "Forward to these hosts: HOST:PORT[,HOST:PORT...] (output.http.hosts).")
    var forward: String?

    @Option(name: .customLong("output-file"), help: "Write events to NDJSON files in DIR (output.file.path).")
    var outputFile: String?

    @Option(name: .customLong("tail"), help: "Follow the files matching GLOB (input.file.paths); repeat for more globs.")
    var tail: [String] = []

    func validate() throws {
        if forward != nil && outputFile != nil {
            throw ValidationError("--forward and --output-file both name the output; one queue feeds one output, give one")
        }
    }

    /// The configuration file (or the embedded default) with these flags applied to its values, checked
    /// by the same rules as the keys they stand for.
    func configuration(file: String?) throws(ConfigurationError) -> AgentConfiguration {
        var configuration = try file.map { f throws(ConfigurationError) in try ConfigurationLoader.load(file: f) } ?? .embeddedDefault()
        if let dataDir {
            let oldDefault = configuration.dataDirectory + "/out"
            configuration.dataDirectory = dataDir
            if case .file(var output) = configuration.output, output.path == oldDefault {
                output.path = dataDir + "/out"
                configuration.output = .file(output)
            }
        }
        if let listen {
            let address = try ConfigurationLoader.address(listen, key: "input.http.address", at: "--listen")
            var http = configuration.http ?? IngestConfiguration()
            http.host = address.host
            http.port = address.port
            configuration.http = http
        }
        if let admin {
            if ["off", "false", "none"].contains(admin.lowercased()) {
                configuration.admin = nil
            } else {
                configuration.admin = try ConfigurationLoader.address(admin, key: "admin.address", at: "--admin")
            }
        }
        if let forward {
            let hosts = try ConfigurationLoader.forwardHosts(forward.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
                                                             key: "output.http.hosts", at: "--forward")
            if case .http(var current) = configuration.output {
                current.hosts = hosts
                configuration.output = .http(current)
            } else {
                configuration.output = .http(HTTPOutputConfiguration(hosts: hosts))
            }
        }
        if let outputFile {
            configuration.output = .file(.init(path: outputFile))
        }
        ConfigurationLoader.tail(tail, into: &configuration)
        return configuration
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the agent.")

    @Option(help: "YAML configuration file. Without it, the embedded default.")
    var config: String?

    @OptionGroup var flags: QuickFlags

    func run() async throws {
        let configuration: AgentConfiguration
        do {
            configuration = try flags.configuration(file: config)
        } catch {
            FileHandle.standardError.write(Data("ferry: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: configuration.logging.level) ?? .info
        let format: LineLogHandler.Format = configuration.logging.format == .json ? .json : .logfmt
        let limiter = RepeatLimiter()
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level, limiter: limiter) }
        var logger = Logger(label: "ferry")
        logger.logLevel = level
        let status = await Agent.run(configuration, logger: logger)
        if status != 0 { throw ExitCode(status) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration and print the effective one, secrets redacted. Exit status 2 if invalid."
    )

    @Argument(help: "YAML configuration file.")
    var file: String

    @OptionGroup var flags: QuickFlags

    func run() throws {
        do {
            print(try flags.configuration(file: file).redactedYAML, terminator: "")
        } catch {
            FileHandle.standardError.write(Data("ferry: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("ferry \(Agent.version)") }
}
