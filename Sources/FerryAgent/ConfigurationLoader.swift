import FerryForward
import FerryIngest
import FerryKafka
package import FerryPipeline
import FerryQueue
import FerryService
import FerryWire
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif


/// Reads Ferry's YAML configuration: `${VAR}` and `${VAR:-default}` in any string value, every key
/// checked (unknown keys refused with their path), every value checked (bad ones refused with the
/// accepted values), defaults from `AgentConfiguration.embeddedDefault`.
package enum ConfigurationLoader {
    package static func load(file: String, environment: [String: String]? = nil) throws(ConfigurationError) -> AgentConfiguration {
        let environment = environment ?? ProcessInfo.processInfo.environment
        return try parse(try readText(file), environment: environment, source: file)
    }

    /// The file's text, or an error that says why it cannot be read (the system's reason, not an object dump).
    static func readText(_ file: String) throws(ConfigurationError) -> String {
        func failure(_ reason: String) -> ConfigurationError {
            ConfigurationError("cannot read the configuration file \(file): \(reason); check the path and that Ferry's user may read it")
        }
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(file)
        } catch {
            throw failure(error.reason)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("it is not UTF-8 text") }
        return text
    }

    package static func parse(_ text: String, environment: [String: String]? = nil, source: String = "config") throws(ConfigurationError) -> AgentConfiguration {
        let root: Node?
        do {
            root = try YAML.compose(text)
        } catch {
            throw ConfigurationError("\(source) is not valid YAML: \(error); fix the file (its line and column are given) and run ferry check-config")
        }
        var configuration = AgentConfiguration.embeddedDefault()
        guard let root else { return configuration }
        let reader = Reader(environment: environment ?? ProcessInfo.processInfo.environment, source: source)
        let top = try reader.mapping(root, path: "", keys: ["input", "queue", "output", "outputs", "admin", "logging"])

        if let queue = top["queue"] {
            let q = try reader.mapping(queue, path: "queue", keys: ["path", "max_bytes", "when_full", "min_free", "max_age"])
            if let path = q["path"] { configuration.dataDirectory = try reader.string(path, path: "queue.path") }
            if let size = q["max_bytes"] { configuration.queue.maxBytes = try reader.bytes(size, path: "queue.max_bytes") }
            if let free = q["min_free"] { configuration.queue.minFree = try reader.minFree(free, path: "queue.min_free") }
            if let age = q["max_age"] { configuration.queue.maxAgeMilliseconds = try reader.seconds(age, path: "queue.max_age") * 1000 }
            if let policy = q["when_full"] {
                configuration.queue.whenFull = try reader.choice(policy, path: "queue.when_full", QueueConfiguration.WhenFull.allCases.map(\.rawValue)).flatMap(QueueConfiguration.WhenFull.init(rawValue:))!
            }
        }
        // The file output's default path follows the data directory.
        configuration.outputs = [OutputConfiguration(name: ConsumerSettings.defaultName, .file(FileOutputConfiguration(path: configuration.dataDirectory + "/out")))]

        if let input = top["input"] {
            let i = try reader.mapping(input, path: "input", keys: ["http", "kafka", "syslog", "relp", "file", "journald", "internal_metrics"])
            var inputs: [InputConfiguration] = []
            if let http = i["http"] {
                // `http: false` turns the HTTP ingest off (an agent that only follows files, say).
                if case .scalar = http {
                    if try reader.bool(http, path: "input.http") { inputs.append(InputConfiguration(.http(IngestConfiguration()))) }
                } else {
                    let (settings, stamp) = try ingest(http, reader: reader)
                    inputs.append(InputConfiguration(.http(settings), stamp: stamp))
                }
            } else {
                inputs.append(InputConfiguration(.http(IngestConfiguration())))
            }
            if let kafka = i["kafka"] {
                let (settings, stamp) = try kafkaInput(kafka, reader: reader)
                inputs.append(InputConfiguration(.kafka(settings), stamp: stamp))
            }
            if let syslog = i["syslog"] { inputs.append(try syslogInput(syslog, reader: reader)) }
            if let relp = i["relp"] { inputs.append(try relpInput(relp, reader: reader)) }
            if let file = i["file"] {
                let (settings, stamp) = try fileInput(file, reader: reader)
                inputs.append(InputConfiguration(.file(settings), stamp: stamp))
            }
            if let journald = i["journald"] {
                let (settings, stamp) = try journaldInput(journald, reader: reader)
                inputs.append(InputConfiguration(.journald(settings), stamp: stamp))
            }
            if let metrics = i["internal_metrics"], let input = try internalMetricsInput(metrics, reader: reader) {
                inputs.append(input)
            }
            configuration.inputs = inputs
        }
        var outputs: [OutputConfiguration] = []
        if let output = top["output"] {
            // `output:` is the output named default, as in every configuration before named outputs.
            let o = try reader.mapping(output, path: "output", keys: outputKinds)
            outputs.append(OutputConfiguration(name: ConsumerSettings.defaultName, try outputKind(output, o, path: "output", name: ConsumerSettings.defaultName,
                                                                                               dataDirectory: configuration.dataDirectory, reader: reader)))
        }
        if let named = top["outputs"] {
            guard case .mapping(let mapping) = named, !mapping.isEmpty else {
                throw ConfigurationError("\(reader.location(named)): outputs must be a mapping of output names to outputs, e.g. { aggregators: { http: { hosts: [...] } }, archive: { file: { path: /var/lib/ferry/archive } } }")
            }
            for (keyNode, node) in mapping {
                let name = keyNode.string ?? ""
                let path = "outputs.\(name)"
                let allowed = name.utf8.allSatisfy { byte in
                    (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x5F || byte == 0x2D || byte == 0x2E
                }
                guard allowed, (1...64).contains(name.utf8.count) else {
                    throw ConfigurationError("\(reader.location(keyNode)): output name \"\(name)\" must be 1 to 64 letters, digits, '_', '-' or '.'")
                }
                guard !outputs.contains(where: { $0.name == name }) else {
                    throw ConfigurationError("\(reader.location(keyNode)): \(path): the output \(name) is given twice\(name == ConsumerSettings.defaultName ? " (output: is the output named default)" : ""); rename one")
                }
                let o = try reader.mapping(node, path: path, keys: outputKinds.union(["start_from", "when_lagging", "max_lag_bytes", "max_lag_age"]))
                var consumer = ConsumerSettings(name: name)
                if let v = o["start_from"] {
                    consumer.startFrom = try reader.choice(v, path: "\(path).start_from", ConsumerSettings.StartFrom.allCases.map(\.rawValue)).flatMap(ConsumerSettings.StartFrom.init(rawValue:))!
                }
                if let v = o["when_lagging"] {
                    consumer.whenLagging = try reader.choice(v, path: "\(path).when_lagging", ConsumerSettings.WhenLagging.allCases.map(\.rawValue)).flatMap(ConsumerSettings.WhenLagging.init(rawValue:))!
                }
                if let v = o["max_lag_bytes"] { consumer.maxLagBytes = try reader.bytes(v, path: "\(path).max_lag_bytes") }
                if let v = o["max_lag_age"] { consumer.maxLagAgeMilliseconds = try reader.seconds(v, path: "\(path).max_lag_age") * 1000 }
                outputs.append(OutputConfiguration(name: name, try outputKind(node, o, path: path, name: name, dataDirectory: configuration.dataDirectory, reader: reader),
                                                   consumer: consumer))
            }
        }
        if !outputs.isEmpty { configuration.outputs = outputs }
        var filePaths: [String: String] = [:]
        for output in configuration.outputs {
            if case .file(let file) = output.kind {
                if let other = filePaths[file.path] {
                    throw ConfigurationError("\(source): the file outputs \(other) and \(output.name) both write to \(file.path); give each its own path")
                }
                filePaths[file.path] = output.name
            }
        }
        if let admin = top["admin"] {
            if case .scalar(let s) = admin, ["false", "off", "none"].contains(s.string.lowercased()) {
                configuration.admin = nil
            } else {
                let a = try reader.mapping(admin, path: "admin", keys: ["address", "tls", "auth"])
                if let address = a["address"] { configuration.admin = try reader.address(address, path: "admin.address") }
                if let tls = a["tls"] {
                    configuration.adminTLS = try listenerTLS(tls, path: "admin.tls", reader: reader)
                    configuration.adminAllowPlaintext = configuration.adminTLS == nil
                }
                if let auth = a["auth"] { configuration.adminAuth = try basicAuth(auth, path: "admin.auth", reader: reader) }
            }
        }
        if let logging = top["logging"] {
            let l = try reader.mapping(logging, path: "logging", keys: ["level", "format"])
            if let level = l["level"] {
                configuration.logging.level = try reader.choice(level, path: "logging.level", ["trace", "debug", "info", "notice", "warning", "error", "critical"])!
            }
            if let format = l["format"] {
                configuration.logging.format = try reader.choice(format, path: "logging.format", ["logfmt", "json"]).flatMap(AgentConfiguration.Logging.Format.init(rawValue:))!
            }
        }
        return configuration
    }

    /// `input.internal_metrics`: `true`/`false`, or `{ interval, fields, add_timestamp }`. nil when off.
    static func internalMetricsInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> InputConfiguration? {
        let path = "input.internal_metrics"
        if case .scalar = node {
            return try reader.bool(node, path: path) ? InputConfiguration(.internalMetrics(InternalMetricsSettings())) : nil
        }
        let m = try reader.mapping(node, path: path, keys: stampKeys.union(["interval"]))
        var settings = InternalMetricsSettings()
        if let v = m["interval"] {
            // Whole seconds (rounded up), so at least 1 s: metrics more often would crowd the data they describe.
            settings.interval = .seconds(try reader.seconds(v, path: "\(path).interval"))
        }
        return InputConfiguration(.internalMetrics(settings), stamp: try stamp(m, path: path, reader: reader))
    }

    /// The keys every input takes besides its own: how its events are stamped.
    static let stampKeys: Set<String> = ["fields", "add_timestamp"]

    /// `fields` (a mapping of constant string fields) and `add_timestamp` of the input at `path`.
    static func stamp(_ h: [String: Node], path: String, reader: Reader) throws(ConfigurationError) -> StampSettings {
        var settings = StampSettings()
        if let v = h["add_timestamp"] { settings.addTimestamp = try reader.bool(v, path: "\(path).add_timestamp") }
        if let fields = h["fields"] {
            guard case .mapping(let mapping) = fields else {
                throw ConfigurationError("\(reader.location(fields)): \(path).fields must be a mapping of constant fields, e.g. { env: prod, site: \"${SITE}\" }")
            }
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? ""
                guard !key.isEmpty else { throw ConfigurationError("\(reader.location(keyNode)): \(path).fields has an empty key") }
                guard !settings.fields.contains(where: { $0.key == key }) else {
                    throw ConfigurationError("\(reader.location(keyNode)): \(path).fields names \(key) twice; keep one")
                }
                guard key != EventStamp.timestampKey && key != "host" else {
                    throw ConfigurationError("\(reader.location(keyNode)): \(path).fields cannot set \(key): the input sets it; choose another name")
                }
                settings.fields.append(.init(key: key, value: try reader.string(value, path: "\(path).fields.\(key)")))
            }
            guard settings.fields.count <= 60 else {
                throw ConfigurationError("\(reader.location(fields)): \(path).fields has \(settings.fields.count) fields; at most 60 are allowed")
            }
        }
        return settings
    }

    /// An `auth` block of a listener: `username` and `password`, both required.
    static func basicAuth(_ auth: Node, path: String, reader: Reader) throws(ConfigurationError) -> IngestConfiguration.BasicAuth {
        let a = try reader.mapping(auth, path: path, keys: ["username", "password"])
        guard let user = a["username"], let password = a["password"] else {
            throw ConfigurationError("\(reader.location(auth)): \(path) needs username and password")
        }
        return .init(username: try reader.string(user, path: "\(path).username"), password: try reader.string(password, path: "\(path).password"))
    }

    static func ingest(_ node: Node, reader: Reader) throws(ConfigurationError) -> (IngestConfiguration, StampSettings) {
        let h = try reader.mapping(node, path: "input.http", keys: stampKeys.union(["address", "tls", "auth", "limits"]))
        var c = IngestConfiguration()
        if let address = h["address"] {
            let a = try reader.address(address, path: "input.http.address")
            (c.host, c.port) = (a.host, a.port)
        }
        if let tls = h["tls"] {
            c.tls = try listenerTLS(tls, path: "input.http.tls", reader: reader)
            c.allowPlaintext = c.tls == nil
        }
        if let auth = h["auth"] { c.auth = try basicAuth(auth, path: "input.http.auth", reader: reader) }
        if let limits = h["limits"] {
            let l = try reader.mapping(limits, path: "input.http.limits", keys: ["max_body_bytes", "max_decompressed_bytes", "max_event_bytes", "max_events_per_request", "request_timeout", "idle_timeout", "max_connections"])
            if let v = l["max_body_bytes"] { c.limits.maxBodyBytes = try reader.bytes(v, path: "input.http.limits.max_body_bytes") }
            if let v = l["max_decompressed_bytes"] { c.limits.maxDecompressedBytes = try reader.bytes(v, path: "input.http.limits.max_decompressed_bytes") }
            if let v = l["max_event_bytes"] { c.limits.maxEventBytes = try reader.bytes(v, path: "input.http.limits.max_event_bytes") }
            if let v = l["max_events_per_request"] { c.limits.maxEventsPerRequest = try reader.positiveInt(v, path: "input.http.limits.max_events_per_request") }
            if let v = l["request_timeout"] { c.limits.requestTimeoutSeconds = try reader.seconds(v, path: "input.http.limits.request_timeout") }
            if let v = l["idle_timeout"] { c.limits.idleTimeoutSeconds = try reader.seconds(v, path: "input.http.limits.idle_timeout") }
            if let v = l["max_connections"] { c.limits.maxConnections = try reader.positiveInt(v, path: "input.http.limits.max_connections") }
        }
        return (c, try stamp(h, path: "input.http", reader: reader))
    }

    static let outputKinds: Set<String> = ["http", "file", "kafka"]

    /// The kind of the output at `path`: exactly one of `http`, `file`, `kafka` among its keys `o`.
    static func outputKind(_ node: Node, _ o: [String: Node], path: String, name: String, dataDirectory: String, reader: Reader) throws(ConfigurationError) -> AgentConfiguration.Output {
        let kinds = o.keys.filter { outputKinds.contains($0) }.sorted()
        guard kinds.count == 1 else {
            throw ConfigurationError("\(reader.location(node)): \(path) " + (kinds.isEmpty ? "needs one of http, file or kafka" : "has \(kinds.joined(separator: " and ")); an output has one kind: keep one, or make another output under outputs:"))
        }
        if let kafka = o["kafka"] { return .kafka(try kafkaOutput(kafka, path: "\(path).kafka", reader: reader)) }
        if let http = o["http"] { return .http(try httpOutput(http, path: "\(path).http", reader: reader)) }
        let file = o["file"]!
        let f = try reader.mapping(file, path: "\(path).file", keys: ["path", "rotate_bytes", "max_files", "max_age"])
        // The default output writes under <queue.path>/out, others under <queue.path>/out-<name>.
        var c = FileOutputConfiguration(path: dataDirectory + (name == ConsumerSettings.defaultName ? "/out" : "/out-\(name)"))
        if let path = f["path"] { c.path = try reader.string(path, path: "\(path).file.path") }
        if let rotate = f["rotate_bytes"] { c.rotateBytes = try reader.bytes(rotate, path: "\(path).file.rotate_bytes") }
        if let count = f["max_files"] { c.maxFiles = try reader.positiveInt(count, path: "\(path).file.max_files") }
        if let age = f["max_age"] { c.maxAgeSeconds = try reader.seconds(age, path: "\(path).file.max_age") }
        return .file(c)
    }

    /// The `tls` block of a listening input (`input.http`, `input.syslog`, `input.relp`): an identity and
    /// client authentication, or `false` (nil), which allows clear text on a non-loopback address on purpose.
    static func listenerTLS(_ tls: Node, path: String, reader: Reader) throws(ConfigurationError) -> IngestConfiguration.TLS? {
        if case .scalar = tls {
            // `tls: false` disables TLS on purpose (required for a non-loopback address); `true` alone has no identity.
            guard try reader.bool(tls, path: path) == false else {
                throw ConfigurationError("\(reader.location(tls)): \(path): true needs an identity; give certificate and key, or keystore and keystore_password")
            }
            return nil
        }
        let t = try reader.mapping(tls, path: path, keys: ["certificate", "key", "keystore", "keystore_password", "client_auth", "certificate_authorities"])
        let identity: IngestConfiguration.TLS.Identity
        if let keystore = t["keystore"] {
            identity = .pkcs12(path: try reader.string(keystore, path: "\(path).keystore"),
                               password: try t["keystore_password"].map { n throws(ConfigurationError) in try reader.string(n, path: "\(path).keystore_password") } ?? "")
        } else if let certificate = t["certificate"], let key = t["key"] {
            identity = .pem(certificate: try reader.string(certificate, path: "\(path).certificate"), key: try reader.string(key, path: "\(path).key"))
        } else {
            throw ConfigurationError("\(reader.location(tls)): \(path) needs certificate and key, or keystore (and keystore_password)")
        }
        var settings = IngestConfiguration.TLS(identity: identity)
        if let auth = t["client_auth"] {
            settings.clientAuth = try reader.choice(auth, path: "\(path).client_auth", ["none", "optional", "required"]).flatMap(IngestConfiguration.TLS.ClientAuth.init(rawValue:))!
        }
        if let cas = t["certificate_authorities"] {
            settings.certificateAuthorities = try reader.strings(cas, path: "\(path).certificate_authorities")
        }
        if settings.clientAuth != .none && settings.certificateAuthorities.isEmpty {
            throw ConfigurationError("\(reader.location(tls)): \(path).client_auth is \(settings.clientAuth.rawValue) but certificate_authorities is empty; list the CA files that sign client certificates")
        }
        return settings
    }

    static func httpOutput(_ node: Node, path: String = "output.http", reader: Reader) throws(ConfigurationError) -> HTTPOutputConfiguration {
        let h = try reader.mapping(node, path: path, keys: ["hosts", "tls", "auth", "max_request_bytes", "max_events_per_request", "concurrency_per_host", "request_timeout", "max_events_per_second", "hedge"])
        guard let hostsNode = h["hosts"] else {
            throw ConfigurationError("\(reader.location(node)): \(path) needs hosts, a list of host:port")
        }
        let hosts = try forwardHosts(try reader.strings(hostsNode, path: "\(path).hosts"), key: "\(path).hosts", at: reader.location(hostsNode))
        var c = HTTPOutputConfiguration(hosts: hosts)
        if let tls = h["tls"] {
            if case .scalar = tls {
                if try reader.bool(tls, path: "\(path).tls") { c.tls = .init() }
            } else {
                let t = try reader.mapping(tls, path: "\(path).tls", keys: ["certificate_authorities", "certificate", "key", "keystore", "keystore_password", "verify_hostname"])
                var settings = HTTPOutputConfiguration.TLS()
                if let cas = t["certificate_authorities"] {
                    let list = try reader.strings(cas, path: "\(path).tls.certificate_authorities")
                    guard list.count <= 1 else { throw ConfigurationError("\(reader.location(cas)): \(path).tls.certificate_authorities takes one CA file (a bundle may hold several certificates)") }
                    settings.certificateAuthority = list.first
                }
                if let v = t["certificate"] { settings.certificate = try reader.string(v, path: "\(path).tls.certificate") }
                if let v = t["key"] { settings.key = try reader.string(v, path: "\(path).tls.key") }
                if let v = t["keystore"] { settings.keystore = try reader.string(v, path: "\(path).tls.keystore") }
                if let v = t["keystore_password"] { settings.keystorePassword = try reader.string(v, path: "\(path).tls.keystore_password") }
                if let v = t["verify_hostname"] { settings.verifyHostname = try reader.bool(v, path: "\(path).tls.verify_hostname") }
                if (settings.certificate == nil) != (settings.key == nil) {
                    throw ConfigurationError("\(reader.location(tls)): \(path).tls needs both certificate and key for a client identity")
                }
                c.tls = settings
            }
        }
        if let auth = h["auth"] {
            let a = try reader.mapping(auth, path: "\(path).auth", keys: ["username", "password"])
            guard let user = a["username"], let password = a["password"] else {
                throw ConfigurationError("\(reader.location(auth)): \(path).auth needs username and password")
            }
            c.auth = .init(username: try reader.string(user, path: "\(path).auth.username"), password: try reader.string(password, path: "\(path).auth.password"))
        }
        if let v = h["max_request_bytes"] { c.maxRequestBytes = try reader.bytes(v, path: "\(path).max_request_bytes") }
        if let v = h["max_events_per_request"] { c.maxEventsPerRequest = try reader.positiveInt(v, path: "\(path).max_events_per_request") }
        if let v = h["concurrency_per_host"] { c.concurrencyPerHost = try reader.positiveInt(v, path: "\(path).concurrency_per_host") }
        if let v = h["request_timeout"] { c.requestTimeoutSeconds = try reader.seconds(v, path: "\(path).request_timeout") }
        if let v = h["max_events_per_second"] { c.maxEventsPerSecond = try reader.positiveInt(v, path: "\(path).max_events_per_second") }
        if let v = h["hedge"] { c.hedge = try reader.bool(v, path: "\(path).hedge") }
        return c
    }

    static func kafkaOutput(_ node: Node, path: String = "output.kafka", reader: Reader) throws(ConfigurationError) -> KafkaOutputConfiguration {
        let k = try reader.mapping(node, path: path, keys: kafkaConnectionKeys.union(["topic", "key", "compression", "max_events_per_batch", "batches_in_flight"]))
        guard let topic = k["topic"] else { throw ConfigurationError("\(reader.location(node)): \(path) needs topic, the topic events go to") }
        var c = KafkaOutputConfiguration(connection: try kafkaConnection(node, k, path: path, reader: reader), topic: try reader.string(topic, path: "\(path).topic"))
        if let v = k["key"] { c.keyField = try reader.string(v, path: "\(path).key") }
        if let v = k["compression"] { c.compression = try reader.choice(v, path: "\(path).compression", KafkaOutputConfiguration.compressions)! }
        if let v = k["max_events_per_batch"] { c.maxEventsPerBatch = try reader.positiveInt(v, path: "\(path).max_events_per_batch") }
        if let v = k["batches_in_flight"] { c.batchesInFlight = try reader.positiveInt(v, path: "\(path).batches_in_flight") }
        return c
    }

    static func kafkaInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> (KafkaInputConfiguration, StampSettings) {
        let path = "input.kafka"
        let k = try reader.mapping(node, path: path, keys: kafkaConnectionKeys.union(stampKeys).union(["topics", "group_id", "start_from", "max_events_per_append"]))
        guard let topicsNode = k["topics"] else { throw ConfigurationError("\(reader.location(node)): \(path) needs topics, a list of topics to read") }
        let topics = try reader.strings(topicsNode, path: "\(path).topics")
        guard !topics.isEmpty else { throw ConfigurationError("\(reader.location(topicsNode)): \(path).topics is empty; name at least one topic") }
        var c = KafkaInputConfiguration(connection: try kafkaConnection(node, k, path: path, reader: reader), topics: topics)
        if let v = k["group_id"] { c.groupID = try reader.string(v, path: "\(path).group_id") }
        if let v = k["start_from"] {
            c.startFrom = try reader.choice(v, path: "\(path).start_from", KafkaInputConfiguration.StartFrom.allCases.map(\.rawValue)).flatMap(KafkaInputConfiguration.StartFrom.init(rawValue:))!
        }
        if let v = k["max_events_per_append"] { c.maxEventsPerAppend = try reader.positiveInt(v, path: "\(path).max_events_per_append") }
        return (c, try stamp(k, path: path, reader: reader))
    }

    static let kafkaConnectionKeys: Set<String> = ["brokers", "tls", "sasl", "properties"]

    /// `brokers`, `tls`, `sasl` and `properties`, shared by the kafka output and input.
    static func kafkaConnection(_ node: Node, _ k: [String: Node], path: String, reader: Reader) throws(ConfigurationError) -> KafkaConnection {
        guard let brokersNode = k["brokers"] else { throw ConfigurationError("\(reader.location(node)): \(path) needs brokers, a list of host:port") }
        let brokers = try reader.strings(brokersNode, path: "\(path).brokers")
        guard !brokers.isEmpty else { throw ConfigurationError("\(reader.location(brokersNode)): \(path).brokers is empty; list at least one host:port") }
        var c = KafkaConnection(brokers: brokers)
        if let tls = k["tls"] {
            if case .scalar = tls {
                if try reader.bool(tls, path: "\(path).tls") { c.tls = .init() }
            } else {
                let t = try reader.mapping(tls, path: "\(path).tls", keys: ["certificate_authorities", "certificate", "key", "key_password", "verify_hostname"])
                var settings = KafkaConnection.TLS()
                if let cas = t["certificate_authorities"] {
                    let list = try reader.strings(cas, path: "\(path).tls.certificate_authorities")
                    guard list.count <= 1 else { throw ConfigurationError("\(reader.location(cas)): \(path).tls.certificate_authorities takes one CA file (a bundle may hold several certificates)") }
                    settings.certificateAuthority = list.first
                }
                if let v = t["certificate"] { settings.certificate = try reader.string(v, path: "\(path).tls.certificate") }
                if let v = t["key"] { settings.key = try reader.string(v, path: "\(path).tls.key") }
                if let v = t["key_password"] { settings.keyPassword = try reader.string(v, path: "\(path).tls.key_password") }
                if let v = t["verify_hostname"] { settings.verifyHostname = try reader.bool(v, path: "\(path).tls.verify_hostname") }
                if (settings.certificate == nil) != (settings.key == nil) {
                    throw ConfigurationError("\(reader.location(tls)): \(path).tls needs both certificate and key for a client identity")
                }
                c.tls = settings
            }
        }
        if let sasl = k["sasl"] {
            let s = try reader.mapping(sasl, path: "\(path).sasl", keys: ["mechanism", "username", "password"])
            guard let user = s["username"], let password = s["password"] else {
                throw ConfigurationError("\(reader.location(sasl)): \(path).sasl needs username and password")
            }
            var settings = KafkaConnection.SASL(username: try reader.string(user, path: "\(path).sasl.username"), password: try reader.string(password, path: "\(path).sasl.password"))
            if let v = s["mechanism"] { settings.mechanism = try reader.choice(v, path: "\(path).sasl.mechanism", KafkaConnection.SASL.mechanisms)! }
            c.sasl = settings
        }
        if let properties = k["properties"] {
            guard case .mapping(let mapping) = properties else {
                throw ConfigurationError("\(reader.location(properties)): \(path).properties must be a mapping of librdkafka properties, e.g. linger.ms: 10")
            }
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? ""
                c.properties[key] = try reader.string(value, path: "\(path).properties.\(key)")
            }
        }
        return c
    }

    // MARK: Values, whether from the file or from a quick flag

    /// `host:port` (IPv6 in brackets) of a listener. `key` names the setting (a key path or a flag),
    /// `location` where it was given (file and line, or the flag).
    package static func address(_ text: String, key: String, at location: String) throws(ConfigurationError) -> AgentConfiguration.Address {
        guard let endpoint = Endpoint(text), text.contains(":") else {
            throw ConfigurationError("\(location): \(key) is \"\(text)\"; give host:port, e.g. 127.0.0.1:9800 or [::1]:9800")
        }
        return AgentConfiguration.Address(host: endpoint.host, port: endpoint.port)
    }

    /// The downstream hosts of the http output, each `host:port` or `host` (port 9800).
    package static func forwardHosts(_ hosts: [String], key: String, at location: String) throws(ConfigurationError) -> [String] {
        guard !hosts.isEmpty else { throw ConfigurationError("\(location): \(key) is empty; list at least one host:port") }
        for host in hosts where Endpoint(host) == nil {
            throw ConfigurationError("\(location): \(key): \"\(host)\" is not host:port (IPv6 in brackets, e.g. [::1]:9800)")
        }
        return hosts
    }

    /// Typed reads of YAML nodes with errors that name the key path and the line.
    struct Reader {
        let environment: [String: String]
        let source: String

        func location(_ node: Node) -> String {
            node.mark.map { "\(source):\($0.line)" } ?? source
        }

        func mapping(_ node: Node, path: String, keys allowed: Set<String>) throws(ConfigurationError) -> [String: Node] {
            guard case .mapping(let mapping) = node else {
                throw ConfigurationError("\(location(node)): \(path.isEmpty ? "the configuration" : path) must be a mapping of keys (\(allowed.sorted().joined(separator: ", ")))")
            }
            var result: [String: Node] = [:]
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? ""
                let full = path.isEmpty ? key : "\(path).\(key)"
                guard allowed.contains(key) else {
                    throw ConfigurationError("\(location(keyNode)): unknown key \(full); accepted here: \(allowed.sorted().joined(separator: ", "))")
                }
                result[key] = value
            }
            return result
        }

        /// A string scalar with `${VAR}` / `${VAR:-default}` replaced.
        func string(_ node: Node, path: String) throws(ConfigurationError) -> String {
            guard case .scalar(let scalar) = node else {
                throw ConfigurationError("\(location(node)): \(path) must be a single value")
            }
            return try interpolate(scalar.string, path: path, node: node)
        }

        func interpolate(_ text: String, path: String, node: Node) throws(ConfigurationError) -> String {
            var result = ""
            var rest = Substring(text)
            while let start = rest.firstRange(of: "${") {
                result += rest[..<start.lowerBound]
                guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                    throw ConfigurationError("\(location(node)): \(path): unterminated ${ in \"\(text)\"")
                }
                let expression = rest[start.upperBound..<end]
                let name: Substring
                let fallback: Substring?
                if let sep = expression.firstRange(of: ":-") {
                    name = expression[..<sep.lowerBound]
                    fallback = expression[sep.upperBound...]
                } else {
                    name = expression
                    fallback = nil
                }
                if let value = environment[String(name)], !value.isEmpty {
                    result += value
                } else if let fallback {
                    result += fallback
                } else {
                    throw ConfigurationError("\(location(node)): \(path) uses ${\(name)}, which is not set; export \(name) or write ${\(name):-default}")
                }
                rest = rest[rest.index(after: end)...]
            }
            return result + rest
        }

        func strings(_ node: Node, path: String) throws(ConfigurationError) -> [String] {
            switch node {
            case .sequence(let sequence):
                var result: [String] = []
                for item in sequence { result.append(try string(item, path: path)) }
                return result
            case .scalar:
                // A comma-separated string, so that `${HOSTS}` can hold a list.
                return try string(node, path: path).split(separator: ",").map { String($0).trimmingCharacters() }.filter { !$0.isEmpty }
            default:
                throw ConfigurationError("\(location(node)): \(path) must be a list")
            }
        }

        func choice(_ node: Node, path: String, _ accepted: [String]) throws(ConfigurationError) -> String? {
            let value = try string(node, path: path)
            guard accepted.contains(value) else {
                throw ConfigurationError("\(location(node)): \(path) is \"\(value)\"; accepted values: \(accepted.joined(separator: ", "))")
            }
            return value
        }

        func bool(_ node: Node, path: String) throws(ConfigurationError) -> Bool {
            switch try string(node, path: path).lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            case let other: throw ConfigurationError("\(location(node)): \(path) is \"\(other)\"; accepted values: true, false")
            }
        }

        func positiveInt(_ node: Node, path: String) throws(ConfigurationError) -> Int {
            let text = try string(node, path: path)
            guard let value = Int(text.replacing("_", with: "")), value > 0 else {
                throw ConfigurationError("\(location(node)): \(path) is \"\(text)\"; give a whole number above 0")
            }
            return value
        }

        /// `1048576`, `512KiB`, `4MiB`, `1GiB`, `2TiB` (also KB/MB/GB as powers of 1000).
        /// A size or a percentage of the file system (`5%`); `0` turns the floor off.
        func minFree(_ node: Node, path: String) throws(ConfigurationError) -> QueueConfiguration.MinFree {
            let text = try string(node, path: path).replacing(" ", with: "")
            if text == "0" { return .bytes(0) }
            if text.hasSuffix("%") {
                guard let percent = Double(text.dropLast()), percent >= 0, percent < 100 else {
                    throw ConfigurationError("\(location(node)): \(path) is \"\(text)\"; give a percentage of the file system from 0% to 99%, such as 5%, or a size such as 512MiB")
                }
                return .percent(percent)
            }
            return .bytes(UInt64(try bytes(node, path: path)))
        }

        func bytes(_ node: Node, path: String) throws(ConfigurationError) -> Int {
            let text = try string(node, path: path).replacing(" ", with: "")
            let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                          ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000), ("kB", 1000), ("B", 1)]
            var number = Substring(text)
            var multiplier = 1
            for (suffix, factor) in units where text.hasSuffix(suffix) {
                number = text.dropLast(suffix.count)
                multiplier = factor
                break
            }
            guard let value = Double(number), value > 0, value * Double(multiplier) < Double(Int.max) else {
                throw ConfigurationError("\(location(node)): \(path) is \"\(text)\"; give a size such as 1048576, 512KiB, 4MiB or 1GiB")
            }
            return Int(value * Double(multiplier))
        }

        /// `30`, `30s`, `500ms` (rounded up to whole seconds), `5m`, `1h`, `30d`.
        func seconds(_ node: Node, path: String) throws(ConfigurationError) -> Int64 {
            let text = try string(node, path: path)
            let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
            var number = Substring(text)
            var factor = 1.0
            for (suffix, f) in units where text.hasSuffix(suffix) {
                number = text.dropLast(suffix.count)
                factor = f
                break
            }
            guard let value = Double(number), value > 0 else {
                throw ConfigurationError("\(location(node)): \(path) is \"\(text)\"; give a duration such as 30s, 500ms, 5m or 7d")
            }
            return Int64((value * factor).rounded(.up))
        }

        func address(_ node: Node, path: String) throws(ConfigurationError) -> AgentConfiguration.Address {
            try ConfigurationLoader.address(try string(node, path: path), key: path, at: location(node))
        }
    }
}
