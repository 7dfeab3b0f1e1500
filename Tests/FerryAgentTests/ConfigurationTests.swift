@testable import FerryAgent
import FerryForward
import FerryIngest
import FerryKafka
import FerryPipeline
import FerryQueue
import Testing

@Suite struct ConfigurationTests {
    func error(_ yaml: String, environment: [String: String] = [:]) -> String? {
        do {
            _ = try ConfigurationLoader.parse(yaml, environment: environment, source: "ferry.yaml")
            return nil
        } catch {
            return error.message
        }
    }

    /// A file that cannot be read is named with the system's reason, never an error object's dump.
    @Test(arguments: [("/nonexistent-ferry-dir/ferry.yaml", "No such file or directory"), ("/", "Is a directory")])
    func anUnreadableFileIsNamedWithTheReason(_ file: String, _ reason: String) {
        do {
            _ = try ConfigurationLoader.load(file: file, environment: [:])
            Issue.record("\(file) was read")
        } catch {
            #expect(error.message.hasPrefix("cannot read the configuration file \(file): \(reason);"), "\(error.message)")
        }
    }

    @Test func anEmptyFileIsTheEmbeddedDefault() throws {
        let configuration = try ConfigurationLoader.parse("", environment: [:])
        #expect(configuration == .embeddedDefault())
        #expect(configuration.http!.host == "127.0.0.1" && configuration.http!.port == 9800)
        #expect(configuration.output == .file(FileOutputConfiguration(path: "./ferry-data/out")))
    }

    @Test func aFullConfigurationIsRead() throws {
        let yaml = """
        input:
          http:
            address: 0.0.0.0:9800
            tls: { keystore: /etc/ferry/server.p12, keystore_password: "${P12_PASS}", client_auth: required, certificate_authorities: [/etc/ferry/ca.pem] }
            auth: { username: edge, password: "${FERRY_PASS:-changeme}" }
            limits: { max_body_bytes: 8MiB, request_timeout: 10s, max_connections: 200 }
        queue: { path: /var/lib/ferry, max_bytes: 2GiB, when_full: drop_oldest }
        output:
          http:
            hosts: ["10.0.0.123:9800", "[::1]:9801"]
            tls: { certificate_authorities: [/etc/ferry/ca.pem], keystore: /etc/ferry/client.p12, keystore_password: "${P12_PASS}" }
            max_request_bytes: 2MiB
            max_events_per_second: 50000
            hedge: false
        admin: { address: 127.0.0.1:9901 }
        logging: { level: debug, format: json }
        """
        let c = try ConfigurationLoader.parse(yaml, environment: ["P12_PASS": "s3cret"])
        #expect(c.http!.host == "0.0.0.0")
        #expect(c.http!.tls?.identity == .pkcs12(path: "/etc/ferry/server.p12", password: "s3cret"))
        #expect(c.http!.tls?.clientAuth == .required)
        #expect(c.http!.auth?.password == "changeme")
        #expect(c.http!.limits.maxBodyBytes == 8 << 20 && c.http!.limits.requestTimeoutSeconds == 10 && c.http!.limits.maxConnections == 200)
        #expect(c.dataDirectory == "/var/lib/ferry" && c.queue.maxBytes == 2 << 30 && c.queue.whenFull == .dropOldest)
        guard case .http(let http) = c.output else { Issue.record("not http"); return }
        #expect(http.hosts == ["10.0.0.123:9800", "[::1]:9801"])
        #expect(http.tls?.keystorePassword == "s3cret" && http.maxRequestBytes == 2 << 20 && http.maxEventsPerSecond == 50000 && !http.hedge)
        #expect(c.admin == AgentConfiguration.Address(host: "127.0.0.1", port: 9901))
        #expect(c.logging.level == "debug" && c.logging.format == .json)
        // Secrets never reach the printed configuration.
        let printed = c.redactedYAML
        #expect(!printed.contains("s3cret") && !printed.contains("changeme"))
        #expect(printed.contains("<redacted>"))
        // The printed configuration reads back to the same one (secrets aside).
        var reread = try ConfigurationLoader.parse(printed.replacingOccurrences(of: "<redacted>", with: "x"), environment: [:])
        reread.http!.tls = c.http!.tls
        reread.http!.auth = c.http!.auth
        if case .http(var h) = reread.output { h.tls?.keystorePassword = "s3cret"; reread.output = .http(h) }
        #expect(reread == c)
    }

    @Test func minFreeAndFileRetentionAreReadPrintedAndBadValuesNamed() throws {
        #expect(try ConfigurationLoader.parse("", environment: [:]).queue.minFree == .percent(5), "a safe default")
        #expect(try ConfigurationLoader.parse("queue: { min_free: 512MiB }", environment: [:]).queue.minFree == .bytes(512 << 20))
        #expect(try ConfigurationLoader.parse("queue: { min_free: 12.5% }", environment: [:]).queue.minFree == .percent(12.5))
        #expect(try ConfigurationLoader.parse("queue: { min_free: 0 }", environment: [:]).queue.minFree == .bytes(0))
        #expect(error("queue: { min_free: 100% }")?.contains("queue.min_free is \"100%\"; give a percentage") == true)
        #expect(error("queue: { min_free: lots }")?.contains("queue.min_free") == true)

        let c = try ConfigurationLoader.parse("output: { file: { path: /a, max_files: 20, max_age: 7d } }", environment: [:])
        #expect(c.output == .file(FileOutputConfiguration(path: "/a", maxFiles: 20, maxAgeSeconds: 7 * 86400)))
        #expect(error("output: { file: { path: /a, max_files: 0 } }")?.contains("output.file.max_files") == true)
        // What is printed reads back as the same configuration.
        var printed = c
        printed.queue.minFree = .percent(12.5)
        let reread = try ConfigurationLoader.parse(printed.redactedYAML, environment: [:])
        #expect(reread.redactedYAML == printed.redactedYAML)
        #expect(reread.queue.minFree == .percent(12.5) && reread.output == c.output)
    }

    @Test func unknownKeysAreRefusedWithTheirPathAndLine() {
        let message = error("queue:\n  path: ./q\n  max_byte: 1GiB\n")
        #expect(message?.contains("unknown key queue.max_byte") == true)
        #expect(message?.contains("ferry.yaml:3") == true)
        #expect(message?.contains("max_bytes") == true)
    }

    @Test func badValuesAreRefusedWithTheAcceptedOnes() {
        #expect(error("queue: { when_full: discard }")?.contains("accepted values: block, drop_oldest") == true)
        #expect(error("output: { http: { hosts: [a:1], hedge: sometimes } }")?.contains("output.http.hedge") == true)
        #expect(error("queue: { max_bytes: lots }")?.contains("queue.max_bytes") == true)
        #expect(error("input: { http: { address: nowhere } }")?.contains("input.http.address") == true)
        #expect(error("output: { http: { hosts: [] } }")?.contains("output.http.hosts is empty") == true)
        #expect(error("output: { http: { hosts: [\"a:b:c\"] } }")?.contains("not host:port") == true)
        #expect(error("output: { http: { hosts: [a] }, file: { path: x } }")?.contains("an output has one kind") == true)
        #expect(error("input: { http: { tls: { certificate: a.pem, key: a.key, client_auth: required } } }")?.contains("certificate_authorities is empty") == true)
        #expect(error("logging: { level: loud }")?.contains("accepted values: trace") == true)
        #expect(error("queue: [1, 2]")?.contains("queue must be a mapping") == true)
        #expect(error("queue: {")?.contains("not valid YAML") == true)
    }

    @Test func variablesAreInterpolatedAndMissingOnesNamed() throws {
        let c = try ConfigurationLoader.parse("output: { http: { hosts: \"${HOSTS}\" } }", environment: ["HOSTS": "a:1, b:2"])
        #expect(c.output == .http(HTTPOutputConfiguration(hosts: ["a:1", "b:2"])))
        let d = try ConfigurationLoader.parse("queue: { path: \"${DIR:-/tmp/q}/x\" }", environment: [:])
        #expect(d.dataDirectory == "/tmp/q/x")
        #expect(error("queue: { path: \"${NOPE}\" }")?.contains("${NOPE}, which is not set") == true)
    }

    @Test func kafkaOutputAndInputAreReadAndTheirSecretsRedacted() throws {
        let yaml = """
        input:
          kafka:
            brokers: "${BROKERS}"
            topics: [app-logs, audit]
            group_id: edge-ferry
            start_from: latest
            sasl: { mechanism: SCRAM-SHA-512, username: ferry, password: "${KPASS}" }
        output:
          kafka:
            brokers: [k1:9092, k2:9092]
            topic: events
            key: host
            compression: zstd
            tls: { certificate_authorities: [/etc/ferry/ca.pem], certificate: c.pem, key: c.key, key_password: "${KPASS}" }
            properties: { linger.ms: 20, sasl.oauthbearer.client.secret: "${KPASS}" }
        """
        let c = try ConfigurationLoader.parse(yaml, environment: ["BROKERS": "a:9092,b:9092", "KPASS": "kafka-s3cret"])
        guard case .kafka(let out) = c.output, let input = c.kafkaInput else { Issue.record("kafka not read"); return }
        #expect(out.connection.brokers == ["k1:9092", "k2:9092"] && out.topic == "events" && out.keyField == "host" && out.compression == "zstd")
        #expect(out.connection.tls?.keyPassword == "kafka-s3cret" && out.connection.properties["linger.ms"] == "20")
        #expect(input.connection.brokers == ["a:9092", "b:9092"] && input.topics == ["app-logs", "audit"])
        #expect(input.groupID == "edge-ferry" && input.startFrom == .latest && input.connection.sasl?.mechanism == "SCRAM-SHA-512")
        let printed = c.redactedYAML
        #expect(!printed.contains("kafka-s3cret"))
        #expect(printed.contains("topic: \"events\"") && printed.contains("linger.ms: \"20\""))
        // librdkafka's properties: Ferry's choices first, the user's after them (so they win).
        let properties = out.librdkafkaProperties().map { "\($0.0)=\($0.1)" }
        #expect(properties.contains("acks=all") && properties.contains("enable.idempotence=true") && properties.contains("security.protocol=ssl"))
        let lingers = properties.filter { $0.hasPrefix("linger.ms=") }
        #expect(lingers.last == "linger.ms=20", "the user's value comes last")

        #expect(error("output: { kafka: { topic: t } }")?.contains("output.kafka needs brokers") == true)
        #expect(error("output: { kafka: { brokers: [a:1] } }")?.contains("needs topic") == true)
        #expect(error("output: { kafka: { brokers: [a:1], topic: t, compression: brotli } }")?.contains("accepted values: none, gzip, snappy, lz4, zstd") == true)
        #expect(error("output: { kafka: { brokers: [a:1], topic: t }, file: { path: x } }")?.contains("an output has one kind") == true)
        #expect(error("input: { kafka: { brokers: [a:1], topics: [t], sasl: { username: u } } }")?.contains("needs username and password") == true)
        #expect(error("input: { kafka: { brokers: [a:1], topic: t } }")?.contains("unknown key input.kafka.topic") == true)
    }

    @Test func everyInputTakesFieldsAndAddTimestamp() throws {
        let c = try ConfigurationLoader.parse("""
        input:
          http: { add_timestamp: false, fields: { env: prod, site: "${SITE:-lab}" } }
          kafka: { brokers: [k:9092], topics: [t], fields: { pipeline: kafka } }
        """, environment: [:])
        #expect(c.inputs.map(\.name) == ["http", "kafka"])
        #expect(c.inputs[0].stamp == StampSettings(addTimestamp: false, fields: [.init(key: "env", value: "prod"), .init(key: "site", value: "lab")]))
        #expect(c.inputs[1].stamp == StampSettings(addTimestamp: true, fields: [.init(key: "pipeline", value: "kafka")]))
        // What check-config prints reads back the same.
        let reread = try ConfigurationLoader.parse(c.redactedYAML, environment: [:])
        #expect(reread.inputs.map(\.stamp) == c.inputs.map(\.stamp))
        #expect(error("input: { http: { fields: [a, b] } }")?.contains("input.http.fields must be a mapping") == true)
        #expect(error("input: { http: { fields: { host: x } } }")?.contains("cannot set host") == true)
        #expect(error("input: { http: { fields: { \"@timestamp\": x } } }")?.contains("cannot set @timestamp") == true)
        #expect(error("input: { http: { add_timestamp: maybe } }")?.contains("input.http.add_timestamp is \"maybe\"") == true)
    }

    @Test func namedOutputsAreReadWithTheirLagPolicies() throws {
        let yaml = """
        queue: { path: /var/lib/ferry }
        output:
          http: { hosts: ["10.0.0.1:9800"] }
        outputs:
          europe:
            http: { hosts: ["10.1.0.1:9800"], tls: false }
            when_lagging: block
            max_lag_bytes: 1GiB
          archive:
            file: {}
            max_lag_age: 3600s
        """
        let configuration = try ConfigurationLoader.parse(yaml, environment: [:])
        #expect(configuration.outputs.map(\.name) == ["default", "europe", "archive"])
        let europe = configuration.outputs[1]
        #expect(europe.consumer == ConsumerSettings(name: "europe", whenLagging: .block, maxLagBytes: 1 << 30))
        let archive = configuration.outputs[2]
        #expect(archive.kind == .file(FileOutputConfiguration(path: "/var/lib/ferry/out-archive")))
        #expect(archive.consumer == ConsumerSettings(name: "archive", whenLagging: .drop, maxLagAgeMilliseconds: 3_600_000))
        // What check-config prints reads back as the same configuration.
        let reread = try ConfigurationLoader.parse(configuration.redactedYAML, environment: [:])
        #expect(reread.outputs == configuration.outputs)
        #expect(reread.queue == configuration.queue)
        #expect(reread.dataDirectory == configuration.dataDirectory)
        // Two file outputs on one path would write each other's files.
        #expect(error("outputs: { a: { file: { path: /x } }, b: { file: { path: /x } } }")?.contains("both write to /x") == true)
        #expect(error("outputs: { a: { when_lagging: sometimes, file: {} } }")?.contains("drop, block") == true)
        #expect(error("outputs: [a, b]")?.contains("mapping of output names") == true)
    }

    @Test func theHTTPIngestCanBeTurnedOff() throws {
        let off = try ConfigurationLoader.parse("input: { http: false, kafka: { brokers: [k:9092], topics: [t] } }", environment: [:])
        #expect(off.http == nil && off.inputs.map(\.name) == ["kafka"])
        #expect(try ConfigurationLoader.parse(off.redactedYAML, environment: [:]).http == nil)
        // Without `input`, and with `input` that does not name it, the ingest is on: round-1 files keep working.
        #expect(try ConfigurationLoader.parse("input: { kafka: { brokers: [k:9092], topics: [t] } }", environment: [:]).http != nil)
        #expect(try ConfigurationLoader.parse("input: { http: true }", environment: [:]).http == IngestConfiguration())
    }

    @Test func quickFlagValuesAreCheckedLikeTheKeysTheyStandFor() throws {
        let address = try ConfigurationLoader.address("[::1]:9900", key: "input.http.address", at: "--listen")
        #expect(address == AgentConfiguration.Address(host: "::1", port: 9900))
        // A value that would have been YAML is just a bad address now.
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.address("1.2.3.4:1\" } }, admin: {", key: "input.http.address", at: "--listen") }
        do {
            _ = try ConfigurationLoader.forwardHosts(["a:1", "b:x"], key: "output.http.hosts", at: "--forward")
            Issue.record("a bad host was accepted")
        } catch {
            #expect(error.message == "--forward: output.http.hosts: \"b:x\" is not host:port (IPv6 in brackets, e.g. [::1]:9800)")
        }
    }

    @Test func plainHTTPOnANonLoopbackAddressNeedsAnExplicitTLSFalse() throws {
        let c = try ConfigurationLoader.parse("input: { http: { address: 0.0.0.0:9800, tls: false } }", environment: [:])
        #expect(c.http!.tls == nil && c.http!.allowPlaintext)
        let d = try ConfigurationLoader.parse("input: { http: { address: 0.0.0.0:9800 } }", environment: [:])
        #expect(d.http!.allowPlaintext == false)  // the ingest then refuses to start, with a message
    }
}

@Suite struct ExampleConfigurationTests {
    @Test(arguments: ["edge.yaml", "aggregator.yaml", "aggregator-to-kafka.yaml"])
    func theShippedExamplesAreValid(_ name: String) throws {
        let path = packageRootForTests() + "/tools/examples/" + name
        let configuration = try ConfigurationLoader.load(file: path, environment: ["FERRY_P12_PASS": "example"])
        #expect(!configuration.redactedYAML.contains("example"))
    }
}

func packageRootForTests(file: String = #filePath) -> String {
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/FerryAgentTests/ConfigurationTests.swift
    return parts.joined(separator: "/")
}
