// swift-tools-version:6.1
import PackageDescription

// Hummingbird's choice, worth copying: no implicit existentials, imports internal unless said otherwise.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Ferry",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FerryWire", targets: ["FerryWire"]),
        .library(name: "FerryQueue", targets: ["FerryQueue"]),
        .executable(name: "ferry", targets: ["ferry"]),
        .executable(name: "ferry-tools", targets: ["ferry-tools"]),
        .executable(name: "ferry-bench-queue", targets: ["ferry-bench-queue"]),
        .executable(name: "ferry-bench-ingest", targets: ["ferry-bench-ingest"]),
        .executable(name: "ferry-bench-forward", targets: ["ferry-bench-forward"]),
        .executable(name: "ferry-bench-tools", targets: ["ferry-bench-tools"]),
        .executable(name: "ferry-bench-kafka", targets: ["ferry-bench-kafka"]),
        .executable(name: "ferry-bench-syslog", targets: ["ferry-bench-syslog"]),
        .executable(name: "ferry-bench-file", targets: ["ferry-bench-file"]),
        .executable(name: "ferry-bench-journald", targets: ["ferry-bench-journald"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // System libraries: LMDB for the queue, zlib for gzip and CRC-32.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // libyaml's event parser for the configuration file (FerryAgent's YAML composer).
        .systemLibrary(name: "CYaml", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // librdkafka for the kafka output and input (and its mock cluster for tests).
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // libsystemd's sd-journal for the journald input.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),

        // Record format, gzip/NDJSON codec, batch ids. No I/O.
        .target(
            name: "FerryWire",
            dependencies: ["CZlib", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // The durable queue: LMDB, one writer thread, group commit.
        .target(
            name: "FerryQueue",
            dependencies: [
                "CLMDB", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What inputs and outputs share: the input seam (`Intake`: stamping, backpressure, counting), the
        // lease loop and slots of the outputs, the one backoff, the listening port of servers.
        .target(
            name: "FerryPipeline",
            dependencies: [
                "FerryQueue", "FerryWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP ingest: Logstash-compatible POST /, acknowledged only after the queue's fsync.
        .target(
            name: "FerryIngest",
            dependencies: [
                "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Delivery: the balancer over downstream hosts (http output) and the file output.
        .target(
            name: "FerryForward",
            dependencies: [
                "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Kafka through librdkafka: the kafka output (queue -> topic) and input (topic -> queue).
        .target(
            name: "FerryKafka",
            dependencies: [
                "CRdKafka", "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // over an abstract store (the input seam plugs in there).
        .target(
            name: "FerrySyslog",
            dependencies: [
                "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // position stored with the events read up to it.
        .target(
            name: "FerryFile",
            dependencies: [
                "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The journald input: the systemd journal through sd-journal, the cursor stored with the entries.
        .target(
            name: "FerryJournald",
            dependencies: [
                "CSystemd", "FerryPipeline", "FerryQueue", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The agent: configuration, wiring, lifecycle, admin endpoints.
        .target(
            name: "FerryAgent",
            dependencies: [
                "FerryPipeline", "FerryQueue", "FerryWire", "FerryIngest", "FerryForward", "FerryKafka", "FerrySyslog", "FerryFile", "FerryJournald",
                "FerryService",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                "CYaml",
            ],
            swiftSettings: swiftSettings
        ),
        // systemd integration: the notify protocol (READY, STOPPING, STATUS, WATCHDOG, RELOADING) spoken
        // over an AF_UNIX datagram socket, and the watchdog's decision. swift-log only: no NIO, no libsystemd.
        .target(
            name: "FerryService",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // `ferry run | check-config | version`: a thin command line over FerryAgent.
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerryAgent", "FerryForward", "FerryIngest", "FerryPipeline", "FerryQueue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // `ferry-tools`: inspect and repair a queue. Links the queue, the codec, FerryFile and FerryJournald (positions, journal lag), never Hummingbird or AsyncHTTPClient.
        .executableTarget(
            name: "ferry-tools",
            dependencies: [
                "FerryFile", "FerryJournald", "FerryQueue", "FerryWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Helpers for tests and benchmarks: temporary queues, child processes, event generators.
        .target(
            name: "FerryTestSupport",
            dependencies: [
                "FerryQueue", "FerryWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // librdkafka's mock cluster, for the Kafka tests and benchmark: test tooling, not production code.
        .target(
            name: "FerryKafkaTestSupport",
            dependencies: ["CRdKafka", "FerryKafka", "FerryPipeline", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // Child process of the crash-safety test: appends concurrently, prints what was acknowledged.
        .executableTarget(
            name: "ferry-crash-appender",
            dependencies: ["FerryQueue", "FerryWire", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Child process of the notify tests: FerryService's notifier and watchdog over a real NIO event loop
        // group, with a fake queue writer that can be told to stall.
        .executableTarget(
            name: "ferry-notify-child",
            dependencies: [
                "FerryService",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Child process of the file input's SIGKILL test: follows files into a queue, prints each append.
        .executableTarget(
            name: "ferry-file-follower",
            dependencies: ["FerryFile", "FerryPipeline", "FerryQueue", "FerryWire", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Child process of the journald input's SIGKILL test: follows a journal directory into a queue, prints each append.
        .executableTarget(
            name: "ferry-journald-follower",
            dependencies: ["FerryJournald", "FerryPipeline", "FerryQueue", "FerryWire", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Queue benchmark (run through tools/bench/queue, release build).
        .executableTarget(
            name: "ferry-bench-queue",
            dependencies: ["FerryQueue", "FerryWire", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/QueueBench",
            swiftSettings: swiftSettings
        ),
        // Ingest benchmark with wrk as the load generator (run through tools/bench/ingest, release build).
        .executableTarget(
            name: "ferry-bench-ingest",
            dependencies: [
                "FerryIngest", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/IngestBench",
            swiftSettings: swiftSettings
        ),
        // Forward benchmark: drains a backlog to receivers in child processes (tools/bench/forward).
        .executableTarget(
            name: "ferry-bench-forward",
            dependencies: [
                "FerryForward", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/ForwardBench",
            swiftSettings: swiftSettings
        ),
        // ferry-tools benchmark (tools/bench/tools): the release ferry-tools binary on queues made here.
        .executableTarget(
            name: "ferry-bench-tools",
            dependencies: ["FerryQueue", "FerryWire", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ToolsBench",
            swiftSettings: swiftSettings
        ),
        // Kafka benchmark (tools/bench/kafka): kafka output and input against librdkafka's mock cluster.
        .executableTarget(
            name: "ferry-bench-kafka",
            dependencies: [
                "FerryKafka", "FerryKafkaTestSupport", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/KafkaBench",
            swiftSettings: swiftSettings
        ),
        // Syslog benchmark (tools/bench/syslog): parser and TCP server with a counting store, against baselines.
        .executableTarget(
            name: "ferry-bench-syslog",
            dependencies: [
                "FerrySyslog", "FerryWire", "FerryTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/SyslogBench",
            swiftSettings: swiftSettings
        ),

        // Journald benchmark (tools/bench/journald): sd-journal -> events against `journalctl -o json`.
        .executableTarget(
            name: "ferry-bench-journald",
            dependencies: ["FerryJournald", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                           .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/JournaldBench",
            swiftSettings: swiftSettings
        ),

        // File input benchmark (tools/bench/file): the multiline matchers, and a pre-written log into the queue
        // against gzip -1 on the same events.
        .executableTarget(
            name: "ferry-bench-file",
            dependencies: ["FerryFile", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/FileBench",
            swiftSettings: swiftSettings
        ),

        .testTarget(
            name: "FerryFileTests",
            dependencies: [
                "FerryFile", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryWireTests",
            dependencies: ["FerryWire", "FerryTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryIngestTests",
            dependencies: [
                "FerryIngest", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryForwardTests",
            dependencies: [
                "FerryForward", "FerryPipeline", "FerryIngest", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryKafkaTests",
            dependencies: [
                "FerryKafka", "FerryKafkaTestSupport", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport", "CRdKafka",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerrySyslogTests",
            dependencies: [
                "FerrySyslog", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryJournaldTests",
            dependencies: [
                "FerryJournald", "FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryAgentTests",
            dependencies: ["FerryAgent", "FerryKafka", "FerryKafkaTestSupport", "FerryPipeline", "FerryQueue", "FerrySyslog", "FerryFile", "FerryJournald", "FerryWire", "FerryTestSupport",
                           .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryToolsTests",
            dependencies: ["FerryFile", "FerryQueue", "FerryWire", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryServiceTests",
            dependencies: ["FerryService", "FerryAgent", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryQueueTests",
            dependencies: ["FerryPipeline", "FerryQueue", "FerryWire", "FerryTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
