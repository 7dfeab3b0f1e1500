public import FerryForward
public import FerryIngest
public import FerryKafka
public import FerryQueue

/// Everything `ferry run` needs, parsed and validated once at start (see `ConfigurationLoader`).
public struct AgentConfiguration: Sendable, Hashable {
    public var ingest: IngestConfiguration
    /// The `kafka` input (`input.kafka`), next to the HTTP ingest; nil when not configured.
    public var kafkaInput: KafkaInputConfiguration?
    /// The data directory (`queue.path`).
    public var dataDirectory: String
    public var queue: QueueConfiguration
    public var output: Output
    /// Admin endpoints (`/health`, `/ready`, `/metrics`, `/queue`); nil disables them.
    public var admin: Address?
    public var logging: Logging

    public enum Output: Sendable, Hashable {
        case http(HTTPOutputConfiguration)
        case file(FileOutputConfiguration)
        case kafka(KafkaOutputConfiguration)
    }

    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct Logging: Sendable, Hashable {
        public enum Format: String, Sendable, Hashable, CaseIterable { case logfmt, json }
        public var level: String
        public var format: Format
        public init(level: String = "info", format: Format = .logfmt) {
            self.level = level
            self.format = format
        }
    }

    /// The embedded default: ingest on 127.0.0.1:9800 (plain HTTP, loopback), queue in `./ferry-data`,
    /// `file` output under `./ferry-data/out`, admin on 127.0.0.1:9801.
    public static func embeddedDefault(dataDirectory: String = "./ferry-data") -> AgentConfiguration {
        AgentConfiguration(
            ingest: IngestConfiguration(),
            dataDirectory: dataDirectory,
            queue: QueueConfiguration(),
            output: .file(FileOutputConfiguration(path: dataDirectory + "/out")),
            admin: Address(host: "127.0.0.1", port: 9801),
            logging: Logging()
        )
    }
}
