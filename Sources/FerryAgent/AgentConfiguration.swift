package import FerryFile
package import FerryJournald
package import FerryForward
package import FerryIngest
package import FerryKafka
package import FerryPipeline
package import FerryQueue

/// Everything `ferry run` needs, parsed and validated once at start (see `ConfigurationLoader`).
package struct AgentConfiguration: Sendable, Hashable {
    /// The inputs, in the order the agent starts them (and stops them last, in reverse). Each appends
    /// through its own `Intake`. The HTTP ingest is on unless `input.http: false`.
    package var inputs: [InputConfiguration]
    /// The data directory (`queue.path`).
    package var dataDirectory: String
    package var queue: QueueConfiguration
    /// The outputs, each a named consumer of the queue with its own cursor (`outputs:`; `output:` is the
    /// output named `default`). At least one.
    package var outputs: [OutputConfiguration]
    /// Admin endpoints (`/health`, `/ready`, `/metrics`, `/queue`); nil disables them.
    package var admin: Address?
    /// The admin endpoints' TLS (`admin.tls`); nil is plain HTTP, allowed on a non-loopback address only
    /// with an explicit `tls: false` (`adminAllowPlaintext`), as for every listener.
    package var adminTLS: IngestConfiguration.TLS? = nil
    package var adminAllowPlaintext = false
    /// Basic authentication for every admin endpoint (`admin.auth`); nil lets every client in.
    package var adminAuth: IngestConfiguration.BasicAuth? = nil
    package var logging: Logging

    package enum Output: Sendable, Hashable {
        case http(HTTPOutputConfiguration)
        case file(FileOutputConfiguration)
        case kafka(KafkaOutputConfiguration)
    }

    package struct Address: Sendable, Hashable, CustomStringConvertible {
        package var host: String
        package var port: Int
        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    package struct Logging: Sendable, Hashable {
        package enum Format: String, Sendable, Hashable, CaseIterable { case logfmt, json }
        package var level: String
        package var format: Format
        package init(level: String = "info", format: Format = .logfmt) {
            self.level = level
            self.format = format
        }
    }

    /// The embedded default: ingest on 127.0.0.1:9800 (plain HTTP, loopback), queue in `./ferry-data`,
    /// `file` output under `./ferry-data/out`, admin on 127.0.0.1:9801.
    package static func embeddedDefault(dataDirectory: String = "./ferry-data") -> AgentConfiguration {
        var queue = QueueConfiguration()
        queue.minFree = .percent(5)
        return AgentConfiguration(
            inputs: [InputConfiguration(.http(IngestConfiguration()))],
            dataDirectory: dataDirectory,
            queue: queue,
            outputs: [OutputConfiguration(name: ConsumerSettings.defaultName, .file(FileOutputConfiguration(path: dataDirectory + "/out")))],
            admin: Address(host: "127.0.0.1", port: 9801),
            logging: Logging()
        )
    }

    /// The output named `default` (`output:`), or the first: setting it replaces that one, or adds it.
    package var output: Output {
        get { (outputs.first { $0.name == ConsumerSettings.defaultName } ?? outputs[0]).kind }
        set {
            if let i = outputs.firstIndex(where: { $0.name == ConsumerSettings.defaultName }) {
                outputs[i].kind = newValue
            } else {
                outputs.insert(OutputConfiguration(name: ConsumerSettings.defaultName, newValue), at: 0)
            }
        }
    }

    /// What the queue must know of the outputs: their names and lag policies.
    package var consumers: [ConsumerSettings] { outputs.map(\.consumer) }

    /// The HTTP ingest's settings, nil when it is off. Setting it replaces the configured one, or adds it first.
    package var http: IngestConfiguration? {
        get {
            for input in inputs { if case .http(let http) = input.source { return http } }
            return nil
        }
        set {
            let index = inputs.firstIndex { if case .http = $0.source { true } else { false } }
            switch (index, newValue) {
            case (let i?, let value?): inputs[i].source = .http(value)
            case (let i?, nil): inputs.remove(at: i)
            case (nil, let value?): inputs.insert(InputConfiguration(.http(value)), at: 0)
            case (nil, nil): break
            }
        }
    }

    /// The Kafka input's settings, nil when it is not configured.
    package var kafkaInput: KafkaInputConfiguration? {
        for input in inputs { if case .kafka(let kafka) = input.source { return kafka } }
        return nil
    }
}

/// One input of the agent: where its events come from, and how they are stamped (`input.<kind>.fields`,
/// `input.<kind>.add_timestamp`).
package struct InputConfiguration: Sendable, Hashable {
    package enum Source: Sendable, Hashable {
        /// `input.http`: the Logstash-compatible HTTP ingest.
        case http(IngestConfiguration)
        /// `input.kafka`: a Kafka consumer group member.
        case kafka(KafkaInputConfiguration)
        /// `input.syslog`: syslog over TCP, TLS and UDP.
        case syslog(SyslogInputSettings)
        /// `input.relp`: RELP, answered after the commit.
        case relp(RELPInputSettings)
        /// `input.file`: follows log files.
        case file(FileInputConfiguration)
        /// `input.journald`: reads the systemd journal.
        case journald(JournaldInputConfiguration)
        /// `input.internal_metrics`: Ferry's own metrics as an event every `interval`.
        case internalMetrics(InternalMetricsSettings)
    }

    package var source: Source
    package var stamp: StampSettings

    package init(_ source: Source, stamp: StampSettings = StampSettings()) {
        self.source = source
        self.stamp = stamp
    }

    /// The input's name: its key under `input`, its metrics' `input` label.
    package var name: String {
        switch source {
        case .http: "http"
        case .kafka: "kafka"
        case .syslog: "syslog"
        case .relp: "relp"
        case .file: "file"
        case .journald: "journald"
        case .internalMetrics: "internal_metrics"
        }
    }

    /// True for inputs that read events made on this host (files, the journal): their events get `host`.
    /// Events that arrive over the network (HTTP, Kafka) come from elsewhere and carry their own.
    package var knowsHost: Bool {
        switch source {
        case .http, .kafka, .syslog, .relp: false
        case .file, .journald, .internalMetrics: true
        }
    }
}

/// `input.internal_metrics`: how often Ferry appends an event with its own metrics.
package struct InternalMetricsSettings: Sendable, Hashable {
    /// Default 60 s: one event a minute is ~1,400 a day, nothing beside the data, and fine-grained enough
    /// to see a backlog grow.
    package static let defaultInterval = Duration.seconds(60)
    package var interval: Duration

    package init(interval: Duration = defaultInterval) {
        self.interval = interval
    }
}

/// One output: its name (its cursor in the queue), what it delivers to, and how it may lag.
package struct OutputConfiguration: Sendable, Hashable {
    package var name: String
    package var kind: AgentConfiguration.Output
    /// `start_from`, `when_lagging`, `max_lag_bytes`, `max_lag_age` (the name is kept in step with `name`).
    package var consumer: ConsumerSettings

    package init(name: String, _ kind: AgentConfiguration.Output, consumer: ConsumerSettings? = nil) {
        self.name = name
        self.kind = kind
        var settings = consumer ?? ConsumerSettings(name: name)
        settings.name = name
        self.consumer = settings
    }
}
