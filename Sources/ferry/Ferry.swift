import ArgumentParser
import FerryAgent
import FerryForward
import FerryIngest
import FerryPipeline
import FoundationEssentials
import Logging
#if canImport(Glibc)
import Glibc
import FerryQueue
#endif

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

    @Option(help: "Forward to these hosts: HOST:PORT[,HOST:PORT...] (output.http.hosts). With --output-file, a second output.")
    var forward: String?

    @Option(name: .customLong("output-file"), help: "Write events to NDJSON files in DIR (output.file.path). With --forward, the output named file.")
    var outputFile: String?

    /// The name of the file output that `--output-file` adds next to `--forward`.
    static let fileOutputName = "file"

    @Option(help: "Take syslog over TCP and UDP on HOST:PORT (input.syslog.address).")
    var syslog: String?

    @Option(help: "Take RELP (rsyslog omrelp) on HOST:PORT (input.relp.address).")
    var relp: String?

    @Option(name: .customLong("tail"), help: "Follow the files matching GLOB (input.file.paths); repeat for more globs.")
    var tail: [String] = []

    @Flag(name: .customLong("journald"), help: "Read the system journal (input.journald, from its end at the first start).")
    var journald = false

    /// The configuration file (or the embedded default) with these flags applied to its values, checked
    /// by the same rules as the keys they stand for.
    func configuration(file: String?) throws(ConfigurationError) -> AgentConfiguration {
        var configuration = try file.map { f throws(ConfigurationError) in try ConfigurationLoader.load(file: f) } ?? .embeddedDefault()
        if let dataDir {
            // File outputs at their default place (`<data>/out`, `<data>/out-<name>`) move with the data.
            let oldDirectory = configuration.dataDirectory
            configuration.dataDirectory = dataDir
            for i in configuration.outputs.indices {
                guard case .file(var output) = configuration.outputs[i].kind, output.path.hasPrefix(oldDirectory + "/out") else { continue }
                let rest = output.path.dropFirst(oldDirectory.count)
                guard rest == "/out" || rest == "/out-\(configuration.outputs[i].name)" else { continue }
                output.path = dataDir + rest
                configuration.outputs[i].kind = .file(output)
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
            let hosts = try ConfigurationLoader.forwardHosts(forward.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty },
                                                             key: "output.http.hosts", at: "--forward")
            if case .http(var current) = configuration.output {
                current.hosts = hosts
                configuration.output = .http(current)
            } else {
                configuration.output = .http(HTTPOutputConfiguration(hosts: hosts))
            }
        }
        if let outputFile {
            if forward != nil {
                // Both: two outputs over the one stored copy, each with its own cursor. The forwarder stays
                // the output named default; the archive is the output named file.
                configuration.outputs.removeAll { $0.name == Self.fileOutputName }
                configuration.outputs.append(OutputConfiguration(name: Self.fileOutputName, .file(.init(path: outputFile))))
            } else {
                configuration.output = .file(.init(path: outputFile))
            }
        }
        if let syslog {
            let address = try ConfigurationLoader.address(syslog, key: "input.syslog.address", at: "--syslog")
            var settings = configuration.syslog ?? SyslogInputSettings()
            (settings.tcp, settings.udp) = (address, address)
            configuration.syslog = settings
        }
        if let relp {
            let address = try ConfigurationLoader.address(relp, key: "input.relp.address", at: "--relp")
            var settings = configuration.relp ?? RELPInputSettings()
            settings.address = address
            configuration.relp = settings
        }
        ConfigurationLoader.tail(tail, into: &configuration)
        ConfigurationLoader.journald(journald, into: &configuration)
        return configuration
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the agent.")

    @Option(help: "YAML configuration file. Without it, the embedded default.")
    var config: String?

    @OptionGroup var flags: QuickFlags

    func run() async throws {
        // At most two malloc arenas, before the agent starts its own threads: glibc gives each busy thread
        // an arena of its own (up to eight per core) and keeps what is freed in it, which made most of the
        // agent's peak RSS under load (docs/ARCHITECTURE.md, "Footprint").
        limitMallocArenas(2)
        let configuration: AgentConfiguration
        do {
            configuration = try flags.configuration(file: config)
        } catch {
            writeStandardError("ferry: \(error.message)\n")
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: configuration.logging.level) ?? .info
        let format: LineLogHandler.Format = configuration.logging.format == .json ? .json : .logfmt
        let limiter = RepeatLimiter()
        let sharedLevel = LogLevelSetting(level)
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: sharedLevel, limiter: limiter) }
        let logger = Logger(label: "ferry")
        // SIGHUP reads the file and the flags again, as at this start.
        let reload = Agent.Reload(logLevel: sharedLevel) { [flags, config] () throws(ConfigurationError) in try flags.configuration(file: config) }
        let status = await Agent.run(configuration, logger: logger, reload: reload)
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
            writeStandardError("ferry: \(error.message)\n")
            throw ExitCode(2)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("ferry \(Agent.version)") }
}

/// glibc's `mallopt(M_ARENA_MAX, count)`, looked up at run time: Swift's Glibc module does not export
/// `<malloc.h>`. `M_ARENA_MAX` is -8 in glibc's `<malloc.h>`. Does nothing where there is no `mallopt`, or
/// when the operator set `MALLOC_ARENA_MAX` (glibc read it at start).
func limitMallocArenas(_ count: Int32) {
    #if canImport(Glibc)
    guard getenv("MALLOC_ARENA_MAX") == nil else { return }
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt") else { return }
    _ = unsafeBitCast(symbol, to: Mallopt.self)(-8, count)
    #endif
}
