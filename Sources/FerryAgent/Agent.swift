import FerryFile
import FerryForward
import FerryIngest
import FerryKafka
import FerryPipeline
import FerryQueue
import Foundation
package import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The `ferry` agent: opens the queue, runs the ingest, the output and the admin endpoints as one
/// `ServiceGroup`, and shuts them down in order on SIGTERM or SIGINT: the ingest stops taking events
/// (503 + Retry-After) and finishes the requests it holds, so every commit in flight completes; the
/// output stops, leaving undelivered records queued; the queue is closed cleanly. A second signal, or
/// `shutdownTimeout`, ends the process at once — still without losing anything acknowledged, since
/// acknowledged means fsynced.
package enum Agent {
    package static let version = "0.1.0-dev"

    /// Runs until a signal stops it. Returns the process exit status.
    package static func run(_ configuration: AgentConfiguration, logger: Logger, shutdownTimeout: Duration = .seconds(30)) async -> Int32 {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let queue: Queue
        do {
            queue = try Queue.open(at: configuration.dataDirectory, configuration: configuration.queue, logger: logger.child("ferry.queue"))
        } catch {
            logger.critical("cannot open the queue", metadata: ["error": "\(error.message)"])
            return 1
        }
        defer { queue.close() }

        let output: any Service
        var inputs: [any Input] = []
        var hostStatus: @Sendable () -> [HostStatus] = { [] }
        do {
            let hostname = currentHostname()
            for input in configuration.inputs {
                let logger = logger.child("ferry.input.\(input.name)")
                let intake = Intake(input: input.name, queue: queue, stamp: input.stamp.stamp(host: input.knowsHost ? hostname : nil), logger: logger)
                switch input.source {
                case .http(let http):
                    inputs.append(try IngestServer(configuration: http, intake: intake, logger: logger))
                case .kafka(let kafka):
                    inputs.append(try KafkaInput(intake: intake, configuration: kafka, logger: logger))
                case .file(let file):
                    inputs.append(try FileInput(intake: intake, configuration: file, logger: logger))
                }
            }
            switch configuration.output {
            case .http(let http):
                let forwarder = try HTTPForwarder(queue: queue, configuration: http, logger: logger.child("ferry.output.http"))
                hostStatus = { forwarder.hostStatus() }
                output = forwarder
            case .file(let file):
                output = try FileForwarder(queue: queue, configuration: file, logger: logger.child("ferry.output.file"))
            case .kafka(let kafka):
                output = try KafkaOutput(queue: queue, configuration: kafka, logger: logger.child("ferry.output.kafka"))
            }
        } catch let error as IngestConfigurationError {
            logger.critical("invalid configuration", metadata: ["error": "\(error.message)"])
            return 2
        } catch let error as ForwardConfigurationError {
            logger.critical("invalid configuration", metadata: ["error": "\(error.message)"])
            return 2
        } catch let error as KafkaConfigurationError {
            logger.critical("invalid configuration", metadata: ["error": "\(error.message)"])
            return 2
        } catch let error as FileInputError {
            logger.critical(error.code == .system ? "cannot start" : "invalid configuration", metadata: ["error": "\(error.message)"])
            return error.code == .system ? 1 : 2
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            return 1
        }

        let state = RunState()
        let statusSource = hostStatus
        let admin = configuration.admin.map { address in
            AdminServer(address: address, queue: queue, registry: registry, hostStatus: statusSource,
                        isReady: { state.inputsStarted.load(ordering: .acquiring) }, logger: logger.child("ferry.admin"))
        }

        // Shut down in reverse order: the inputs first (their in-flight commits complete), then the output, then admin.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let admin { services.append(.init(service: admin)) }
        services.append(.init(service: output))
        for input in inputs.reversed() { services.append(.init(service: input)) }
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger.child("ferry.lifecycle"))
        groupConfiguration.maximumGracefulShutdownDuration = shutdownTimeout
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)

        await withTaskGroup(of: Bool.self) { tasks in
            // Each task returns whether it was the service group, whose end ends the agent.
            tasks.addTask {
                do {
                    try await group.run()
                } catch {
                    logger.error("stopped with an error", metadata: ["error": "\(error)"])
                    state.exitStatus.withLock { $0 = 1 }
                }
                return true
            }
            tasks.addTask { [inputs] in
                var lines: [String] = []
                for input in inputs { lines.append(await input.started()) }
                state.inputsStarted.store(true, ordering: .releasing)
                banner(configuration, inputs: lines, adminPort: await admin?.listeningPort(), logger: logger)
                return false
            }
            tasks.addTask {
                // The first signal starts the graceful shutdown (ServiceGroup); a second one ends the process.
                var count = 0
                for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                    count += 1
                    if count == 1 {
                        logger.notice("stopping: no new events are taken, requests in flight finish, undelivered records stay queued; send the signal again to stop at once")
                    } else {
                        logger.warning("second signal: exiting now; every acknowledged event is on disk and will be delivered after the next start")
                        exit(130)
                    }
                }
                return false
            }
            while let groupEnded = await tasks.next(), !groupEnded {}
            tasks.cancelAll()
        }
        logger.notice("stopped", metadata: [
            "ferry.queue.records": "\(queue.stats.records)", "ferry.queue.events": "\(queue.stats.events)",
        ])
        return state.exitStatus.withLock { $0 }
    }

    /// State shared by the agent's tasks.
    final class RunState: Sendable {
        /// Every input takes events (listens, or has its source open): `/ready`.
        let inputsStarted = Atomic<Bool>(false)
        let exitStatus = Mutex<Int32>(0)
    }

    static func banner(_ configuration: AgentConfiguration, inputs: [String], adminPort: Int?, logger: Logger) {
        let destination: String
        switch configuration.output {
        case .http(let http): destination = "forwarded to \(http.hosts.joined(separator: ", "))"
        case .file(let file): destination = "written to \(file.path) (file output); to forward them instead, start with --forward host:port[,host:port]"
        case .kafka(let kafka): destination = "produced to Kafka topic \(kafka.topic) on \(kafka.connection.brokers.joined(separator: ", "))"
        }
        var lines = ["Ferry \(version) is running."]
        lines += inputs.map { "  \($0)" }
        if inputs.isEmpty { lines.append("  No input is configured: nothing comes in.") }
        lines += [
            "  Queue:        \(configuration.dataDirectory) (events are fsynced before they are acknowledged)",
            "  Events are    \(destination)",
        ]
        if let admin = configuration.admin, let adminPort {
            lines.append("  Admin:        http://\(admin.host):\(adminPort)/health /ready /metrics /queue")
        }
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        logger.info("ferry started", metadata: ["ferry.inputs": "\(configuration.inputs.map(\.name).joined(separator: ","))"])
    }
}

extension Logger {
    /// A logger with another label and the same handler settings.
    func child(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }
}
