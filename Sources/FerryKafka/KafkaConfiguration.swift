/// How Ferry reaches a Kafka cluster: brokers, TLS, SASL and librdkafka properties passed through.
/// Shared by the `kafka` output and the `kafka` input.
package struct KafkaConnection: Sendable, Hashable {
    /// Bootstrap brokers, `host:port`.
    package var brokers: [String]
    package var tls: TLS?
    package var sasl: SASL?
    /// librdkafka properties set as they are, after Ferry's own (so they can override them), e.g.
    /// `linger.ms`, `batch.size`, `client.id`. See librdkafka's CONFIGURATION.md.
    package var properties: [String: String]

    package init(brokers: [String], tls: TLS? = nil, sasl: SASL? = nil, properties: [String: String] = [:]) {
        self.brokers = brokers
        self.tls = tls
        self.sasl = sasl
        self.properties = properties
    }

    package struct TLS: Sendable, Hashable {
        /// PEM file of the CA that signs the brokers' certificates; nil uses the system's trust store.
        package var certificateAuthority: String?
        /// Client identity for mTLS (PEM certificate and key).
        package var certificate: String?
        package var key: String?
        package var keyPassword: String?
        /// Check that the broker's certificate names it. Default true.
        package var verifyHostname: Bool

        package init(certificateAuthority: String? = nil, certificate: String? = nil, key: String? = nil,
                    keyPassword: String? = nil, verifyHostname: Bool = true) {
            self.certificateAuthority = certificateAuthority
            self.certificate = certificate
            self.key = key
            self.keyPassword = keyPassword
            self.verifyHostname = verifyHostname
        }
    }

    package struct SASL: Sendable, Hashable {
        package static let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        package var mechanism: String
        package var username: String
        package var password: String

        package init(mechanism: String = "PLAIN", username: String, password: String) {
            self.mechanism = mechanism
            self.username = username
            self.password = password
        }
    }

    /// Whether a librdkafka property holds a secret (printed redacted).
    package static func isSecretProperty(_ key: String) -> Bool { RdKafka.isSecret(key) }

    /// The librdkafka properties for this connection, in the order they are set.
    package func librdkafkaProperties() -> [(String, String)] {
        var result: [(String, String)] = [("bootstrap.servers", brokers.joined(separator: ","))]
        switch (tls != nil, sasl != nil) {
        case (false, false): result.append(("security.protocol", "plaintext"))
        case (true, false): result.append(("security.protocol", "ssl"))
        case (false, true): result.append(("security.protocol", "sasl_plaintext"))
        case (true, true): result.append(("security.protocol", "sasl_ssl"))
        }
        if let tls {
            if let ca = tls.certificateAuthority { result.append(("ssl.ca.location", ca)) }
            if let certificate = tls.certificate { result.append(("ssl.certificate.location", certificate)) }
            if let key = tls.key { result.append(("ssl.key.location", key)) }
            if let password = tls.keyPassword { result.append(("ssl.key.password", password)) }
            result.append(("ssl.endpoint.identification.algorithm", tls.verifyHostname ? "https" : "none"))
        }
        if let sasl {
            result.append(("sasl.mechanisms", sasl.mechanism))
            result.append(("sasl.username", sasl.username))
            result.append(("sasl.password", sasl.password))
        }
        for key in properties.keys.sorted() { result.append((key, properties[key]!)) }
        return result
    }
}

/// Settings of the `kafka` output.
package struct KafkaOutputConfiguration: Sendable, Hashable {
    package static let compressions = ["none", "gzip", "snappy", "lz4", "zstd"]

    package var connection: KafkaConnection
    /// The topic every event goes to.
    package var topic: String
    /// A top-level field of each event whose value becomes the message key (same key, same partition);
    /// nil, or a field an event lacks, sends without a key (librdkafka spreads those over partitions).
    package var keyField: String?
    /// Compression of message batches. Default lz4.
    package var compression: String
    /// Most events leased and produced as one unit (acknowledged in the queue together). Default 50,000.
    package var maxEventsPerBatch: Int
    /// Units in flight at once. Default 4.
    package var batchesInFlight: Int
    /// Backoff between Ferry's own retries of messages librdkafka gave up on: first and largest delay.
    package var backoffBaseMilliseconds: Int64
    package var backoffCapMilliseconds: Int64

    package init(connection: KafkaConnection, topic: String, keyField: String? = nil, compression: String = "lz4",
                maxEventsPerBatch: Int = 50_000, batchesInFlight: Int = 4,
                backoffBaseMilliseconds: Int64 = 100, backoffCapMilliseconds: Int64 = 30_000) {
        self.connection = connection
        self.topic = topic
        self.keyField = keyField
        self.compression = compression
        self.maxEventsPerBatch = maxEventsPerBatch
        self.batchesInFlight = batchesInFlight
        self.backoffBaseMilliseconds = backoffBaseMilliseconds
        self.backoffCapMilliseconds = backoffCapMilliseconds
    }

    /// Ferry's producer settings: every message acknowledged by all in-sync replicas, the idempotent
    /// producer (no duplicates or reordering from librdkafka's own retries), then the user's properties.
    package func librdkafkaProperties() -> [(String, String)] {
        var result: [(String, String)] = [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.codec", compression),
            ("queue.buffering.max.messages", "1000000"),
            ("linger.ms", "5"),
        ]
        // The connection's properties come last so a user's `properties` override Ferry's choices.
        result.append(contentsOf: connection.librdkafkaProperties())
        return result
    }
}

/// Settings of the `kafka` input.
package struct KafkaInputConfiguration: Sendable, Hashable {
    package enum StartFrom: String, Sendable, Hashable, CaseIterable { case earliest, latest }

    package var connection: KafkaConnection
    package var topics: [String]
    /// Consumer group; members of one group share the topics' partitions. Default `ferry`.
    package var groupID: String
    /// Where a group without committed offsets starts. Default earliest: nothing already in the topic is skipped.
    package var startFrom: StartFrom
    /// Most messages appended to the queue in one commit. Default 10,000.
    package var maxEventsPerAppend: Int

    package init(connection: KafkaConnection, topics: [String], groupID: String = "ferry", startFrom: StartFrom = .earliest,
                maxEventsPerAppend: Int = 10_000) {
        self.connection = connection
        self.topics = topics
        self.groupID = groupID
        self.startFrom = startFrom
        self.maxEventsPerAppend = maxEventsPerAppend
    }

    /// Ferry's consumer settings: offsets committed by Ferry only, after the queue's commit.
    package func librdkafkaProperties() -> [(String, String)] {
        var result: [(String, String)] = [
            ("group.id", groupID),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", startFrom.rawValue),
            ("enable.partition.eof", "false"),
            // librdkafka stops fetching a partition once this many messages wait in the local queue (default
            // 100,000) and looks again only after a pause: the input, which takes 10,000 at a time, then
            // stalled for 0.25-0.45 s again and again (150k events/s). The bytes bound,
            // queued.max.messages.kbytes (64 MiB), still caps the memory of what is fetched ahead.
            ("queued.min.messages", "1000000"),
        ]
        result.append(contentsOf: connection.librdkafkaProperties())
        return result
    }
}

