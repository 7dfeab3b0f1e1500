import FerryFile
import FerryJournald
import FerryForward
import FerryIngest
import FerryKafka
import FerryQueue
import FerryWire

extension AgentConfiguration {
    /// The effective configuration as YAML, every secret (passwords) replaced by `<redacted>`.
    /// What `ferry check-config` prints and what the start-up log describes.
    package var redactedYAML: String {
        var lines: [String] = []
        func quote(_ s: String) -> String { JSONString.literal(s) }  // a JSON string is a YAML double-quoted scalar
        let redacted = "\"<redacted>\""
        lines.append("input:")
        if http == nil { lines.append("  http: false") }
        for input in inputs {
            switch input.source {
            case .http(let ingest):
                lines.append("  http:")
                lines.append("    address: \(quote(AgentConfiguration.Address(host: ingest.host, port: ingest.port).description))")
                if let tls = ingest.tls {
                    lines.append("    tls:")
                    switch tls.identity {
                    case .pem(let certificate, let key):
                        lines.append("      certificate: \(quote(certificate))")
                        lines.append("      key: \(quote(key))")
                    case .pkcs12(let path, _):
                        lines.append("      keystore: \(quote(path))")
                        lines.append("      keystore_password: \(redacted)")
                    }
                    lines.append("      client_auth: \(tls.clientAuth.rawValue)")
                    if !tls.certificateAuthorities.isEmpty {
                        lines.append("      certificate_authorities: [\(tls.certificateAuthorities.map(quote).joined(separator: ", "))]")
                    }
                } else {
                    lines.append("    tls: false")
                }
                if let auth = ingest.auth {
                    lines.append("    auth: { username: \(quote(auth.username)), password: \(redacted) }")
                }
                let l = ingest.limits
                lines.append("    limits: { max_body_bytes: \(l.maxBodyBytes), max_decompressed_bytes: \(l.maxDecompressedBytes), max_event_bytes: \(l.maxEventBytes), max_events_per_request: \(l.maxEventsPerRequest), request_timeout: \(l.requestTimeoutSeconds)s, idle_timeout: \(l.idleTimeoutSeconds)s, max_connections: \(l.maxConnections) }")
            case .kafka(let kafka):
                lines.append("  kafka:")
                lines += kafkaConnection(kafka.connection, quote: quote)
                lines.append("    topics: [\(kafka.topics.map(quote).joined(separator: ", "))]")
                lines.append("    group_id: \(quote(kafka.groupID))")
                lines.append("    start_from: \(kafka.startFrom.rawValue)")
                lines.append("    max_events_per_append: \(kafka.maxEventsPerAppend)")
            case .syslog(let syslog):
                lines.append("  syslog:")
                if let tcp = syslog.tcp { lines.append("    tcp: \(quote(tcp.description))") }
                if let udp = syslog.udp { lines.append("    udp: \(quote(udp.description))") }
                lines += listenerTLS(syslog.tls, allowPlaintext: syslog.allowPlaintext, quote: quote)
                lines.append("    \(syslog.limits.yaml.replacing(", ", with: "\n    "))")
            case .relp(let relp):
                lines.append("  relp:")
                lines.append("    address: \(quote(relp.address.description))")
                lines += listenerTLS(relp.tls, allowPlaintext: relp.allowPlaintext, quote: quote)
                lines.append("    \(relp.limits.yaml.replacing(", ", with: "\n    "))")
            case .file(let file):
                lines += fileInput(file, quote: quote)
            case .journald(let journald):
                lines += journaldInput(journald, quote: quote)
            case .internalMetrics(let metrics):
                lines.append("  internal_metrics:")
                lines.append("    interval: \(metrics.interval.components.seconds)s")
            }
            lines.append("    add_timestamp: \(input.stamp.addTimestamp)")
            if !input.stamp.fields.isEmpty {
                lines.append("    fields: { \(input.stamp.fields.map { "\(quote($0.key)): \(quote($0.value))" }.joined(separator: ", ")) }")
            }
        }
        lines.append("queue:")
        lines.append("  path: \(quote(dataDirectory))")
        lines.append("  max_bytes: \(queue.maxBytes)")
        lines.append("  when_full: \(queue.whenFull.rawValue)")
        if let age = queue.maxAgeMilliseconds { lines.append("  max_age: \(age / 1000)s") }
        switch queue.minFree {
        case .bytes(let bytes): lines.append("  min_free: \(bytes)")
        case .percent(let percent):
            lines.append("  min_free: \(percent == percent.rounded() ? String(Int(percent)) : String(percent))%")
        }
        if outputs.count == 1, outputs[0].name == ConsumerSettings.defaultName, outputs[0].consumer == ConsumerSettings(name: ConsumerSettings.defaultName) {
            lines.append("output:")
            lines += outputLines(outputs[0].kind, indent: "  ", quote: quote)
        } else {
            lines.append("outputs:")
            for output in outputs {
                lines.append("  \(quote(output.name)):")
                let c = output.consumer
                lines.append("    start_from: \(c.startFrom.rawValue)")
                lines.append("    when_lagging: \(c.whenLagging.rawValue)")
                if let bytes = c.maxLagBytes { lines.append("    max_lag_bytes: \(bytes)") }
                if let age = c.maxLagAgeMilliseconds { lines.append("    max_lag_age: \(age / 1000)s") }
                lines += outputLines(output.kind, indent: "    ", quote: quote)
            }
        }
        if let admin {
            lines.append("admin:")
            lines.append("  address: \(quote(admin.description))")
            lines += listenerTLS(adminTLS, allowPlaintext: adminAllowPlaintext, quote: quote).map { String($0.dropFirst(2)) }
            if let auth = adminAuth {
                lines.append("  auth: { username: \(quote(auth.username)), password: \(redacted) }")
            }
        } else {
            lines.append("admin: false")
        }
        lines.append("logging:")
        lines.append("  level: \(logging.level)")
        lines.append("  format: \(logging.format.rawValue)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The lines of one output's kind (`http:`, `file:` or `kafka:` and their keys), at `indent`.
    private func outputLines(_ kind: Output, indent: String, quote: (String) -> String) -> [String] {
        let redacted = "\"<redacted>\""
        var lines: [String] = []
        switch kind {
        case .http(let http):
            lines.append(indent + "http:")
            lines.append(indent + "  hosts: [\(http.hosts.map(quote).joined(separator: ", "))]")
            if let tls = http.tls {
                var parts: [String] = []
                if let ca = tls.certificateAuthority { parts.append("certificate_authorities: [\(quote(ca))]") }
                if let c = tls.certificate { parts.append("certificate: \(quote(c))") }
                if let k = tls.key { parts.append("key: \(quote(k))") }
                if let k = tls.keystore { parts.append("keystore: \(quote(k))") }
                if tls.keystorePassword != nil { parts.append("keystore_password: \(redacted)") }
                parts.append("verify_hostname: \(tls.verifyHostname)")
                lines.append(indent + "  tls: { \(parts.joined(separator: ", ")) }")
            } else {
                lines.append(indent + "  tls: false")
            }
            if let auth = http.auth {
                lines.append(indent + "  auth: { username: \(quote(auth.username)), password: \(redacted) }")
            }
            lines.append(indent + "  max_request_bytes: \(http.maxRequestBytes)")
            lines.append(indent + "  max_events_per_request: \(http.maxEventsPerRequest)")
            lines.append(indent + "  concurrency_per_host: \(http.concurrencyPerHost)")
            lines.append(indent + "  request_timeout: \(http.requestTimeoutSeconds)s")
            if let rate = http.maxEventsPerSecond { lines.append(indent + "  max_events_per_second: \(rate)") }
            lines.append(indent + "  hedge: \(http.hedge)")
        case .file(let file):
            lines.append(indent + "file:")
            lines.append(indent + "  path: \(quote(file.path))")
            lines.append(indent + "  rotate_bytes: \(file.rotateBytes)")
            if let count = file.maxFiles { lines.append(indent + "  max_files: \(count)") }
            if let age = file.maxAgeSeconds { lines.append(indent + "  max_age: \(age)s") }
        case .kafka(let kafka):
            lines.append(indent + "kafka:")
            lines += kafkaConnection(kafka.connection, quote: quote).map { String(indent.dropLast(2)) + $0 }
            lines.append(indent + "  topic: \(quote(kafka.topic))")
            if let key = kafka.keyField { lines.append(indent + "  key: \(quote(key))") }
            lines.append(indent + "  compression: \(kafka.compression)")
            lines.append(indent + "  max_events_per_batch: \(kafka.maxEventsPerBatch)")
            lines.append(indent + "  batches_in_flight: \(kafka.batchesInFlight)")
        }
        return lines
    }

    /// The lines of `input.file` but its stamp keys.
    private func fileInput(_ file: FileInputConfiguration, quote: (String) -> String) -> [String] {
        var lines = ["  file:", "    paths: [\(file.paths.map(quote).joined(separator: ", "))]"]
        if !file.exclude.isEmpty { lines.append("    exclude: [\(file.exclude.map(quote).joined(separator: ", "))]") }
        lines.append("    start_at: \(file.startAt.rawValue)")
        lines.append("    format: \(file.format.rawValue)")
        lines.append("    max_line_bytes: \(file.maxLineBytes)")
        if let multiline = file.multiline {
            let ms = multiline.flushTimeout.components.seconds * 1000 + multiline.flushTimeout.components.attoseconds / 1_000_000_000_000_000
            lines.append("    multiline: { start_pattern: \(quote(multiline.startPattern)), flush_timeout: \(ms)ms }")
        }
        return lines
    }

    /// The lines of `input.journald` but its stamp keys.
    private func journaldInput(_ journald: JournaldInputConfiguration, quote: (String) -> String) -> [String] {
        var lines = ["  journald:"]
        switch journald.source {
        case .system: break
        case .directory(let path): lines.append("    directory: \(quote(path))")
        case .files(let paths): lines.append("    files: [\(paths.map(quote).joined(separator: ", "))]")
        }
        if !journald.units.isEmpty { lines.append("    units: [\(journald.units.map(quote).joined(separator: ", "))]") }
        if !journald.identifiers.isEmpty { lines.append("    identifiers: [\(journald.identifiers.map(quote).joined(separator: ", "))]") }
        if !journald.matches.isEmpty { lines.append("    matches: [\(journald.matches.map(quote).joined(separator: ", "))]") }
        lines.append("    start_at: \(journald.startAt.rawValue)")
        return lines
    }

    /// The lines of a kafka connection, passwords (and properties that look like secrets) redacted.
    private func kafkaConnection(_ c: KafkaConnection, quote: (String) -> String) -> [String] {
        let redacted = "\"<redacted>\""
        var lines = ["    brokers: [\(c.brokers.map(quote).joined(separator: ", "))]"]
        if let tls = c.tls {
            var parts: [String] = []
            if let ca = tls.certificateAuthority { parts.append("certificate_authorities: [\(quote(ca))]") }
            if let v = tls.certificate { parts.append("certificate: \(quote(v))") }
            if let v = tls.key { parts.append("key: \(quote(v))") }
            if tls.keyPassword != nil { parts.append("key_password: \(redacted)") }
            parts.append("verify_hostname: \(tls.verifyHostname)")
            lines.append("    tls: { \(parts.joined(separator: ", ")) }")
        }
        if let sasl = c.sasl {
            lines.append("    sasl: { mechanism: \(sasl.mechanism), username: \(quote(sasl.username)), password: \(redacted) }")
        }
        if !c.properties.isEmpty {
            lines.append("    properties:")
            for key in c.properties.keys.sorted() {
                lines.append("      \(key): \(KafkaConnection.isSecretProperty(key) ? redacted : quote(c.properties[key]!))")
            }
        }
        return lines
    }
}
