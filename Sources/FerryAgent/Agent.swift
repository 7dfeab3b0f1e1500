import FerryFile
import FerryJournald
import FerryForward
import FerryIngest
import FerryKafka
import FerryPipeline
import FerryQueue
import FerryService
import FerryWire
import FerrySyslog
import FoundationEssentials
package import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// The `ferry` agent: opens the queue, runs the ingest, the output and the admin endpoints as one
/// `ServiceGroup`, and shuts them down in order on SIGTERM or SIGINT: the ingest stops taking events
/// (503 + Retry-After) and finishes the requests it holds, so every commit in flight completes; the
/// output stops, leaving undelivered records queued; the queue is closed cleanly. A second signal, or
/// `shutdownTimeout`, ends the process at once — still without losing anything acknowledged, since
/// acknowledged means fsynced.
package enum Agent {
    package static let version = ferryVersion

    /// Runs until a signal stops it. Returns the process exit status. SIGHUP applies `reload` (see
    /// `reloadConfiguration`); without one, it is logged and changes nothing.
    package static func run(_ configuration: AgentConfiguration, logger: Logger, shutdownTimeout: Duration = .seconds(30),
                            reload: Reload? = nil) async -> Int32 {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let queue: Queue
        do {
            var queueConfiguration = configuration.queue
            queueConfiguration.consumers = configuration.consumers
            queue = try Queue.open(at: configuration.dataDirectory, configuration: queueConfiguration, logger: logger.child("ferry.queue"))
        } catch {
            logger.critical("cannot open the queue", metadata: ["error": "\(error.message)"])
            return 1
        }
        defer { queue.close() }

        var outputs: [SupervisedOutput] = []
        var inputs: [any Input] = []
        do {
            let hostname = currentHostname()
            // Made once the outputs whose state they report exist.
            var metricsInputs: [(intake: Intake, interval: Duration, logger: Logger)] = []
            for input in configuration.inputs {
                let logger = logger.child("ferry.input.\(input.name)")
                let intake = Intake(input: input.name, queue: queue, stamp: input.stamp.stamp(host: input.knowsHost ? hostname : nil), logger: logger)
                switch input.source {
                case .http(let http):
                    inputs.append(try IngestServer(configuration: http, intake: intake, logger: logger))
                case .kafka(let kafka):
                    inputs.append(try KafkaInput(intake: intake, configuration: kafka, logger: logger))
                case .syslog(let syslog):
                    inputs.append(try await SyslogServer.bind(configuration: syslog.serverConfiguration(name: input.name), intake: intake, logger: logger))
                case .relp(let relp):
                    inputs.append(try await RELPServer.bind(configuration: relp.serverConfiguration(name: input.name), intake: intake, logger: logger))
                case .file(let file):
                    inputs.append(try FileInput(intake: intake, configuration: file, logger: logger))
                case .journald(let journald):
                    inputs.append(try JournaldInput(intake: intake, configuration: journald, logger: logger))
                case .internalMetrics(let settings):
                    metricsInputs.append((intake, settings.interval, logger))
                }
            }
            for output in configuration.outputs {
                let consumer = try queue.consumer(named: output.name)
                let outputLogger = logger.child("ferry.output.\(output.name)")
                outputs.append(SupervisedOutput(name: output.name, logger: outputLogger,
                                                make: try outputFactory(output.kind, consumer: consumer, logger: outputLogger, replacing: false)))
            }
            for metrics in metricsInputs {
                inputs.append(InternalMetricsInput(intake: metrics.intake, interval: metrics.interval, registry: registry, outputs: outputs,
                                                   logger: metrics.logger))
            }
        } catch let error as ConfigurationError {
            logger.critical("invalid configuration", metadata: ["error": "\(error.message)"])
            return 2
        } catch let error as QueueError {
            logger.critical("cannot start", metadata: ["error": "\(error.message)"])
            return 1
        } catch let error as FileInputError {
            logger.critical(error.code == .system ? "cannot start" : "invalid configuration", metadata: ["error": "\(error.message)"])
            return error.code == .system ? 1 : 2
        } catch let error as JournaldError {
            // A journal that cannot be opened or read is the host's state (permissions, no journal), not a typo.
            let configuration = error.code == .invalidConfiguration || error.code == .unreadablePosition
            logger.critical(configuration ? "invalid configuration" : "cannot start", metadata: ["error": "\(error.message)"])
            return configuration ? 2 : 1
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            return 1
        }

        let state = RunState()
        let supervised = outputs
        let admin: AdminServer?
        do {
            admin = try configuration.admin.map { address throws(ConfigurationError) in
                try AdminServer(address: address, tls: configuration.adminTLS, allowPlaintext: configuration.adminAllowPlaintext,
                                auth: configuration.adminAuth, queue: queue, registry: registry, outputs: supervised,
                                isReady: { state.inputsStarted.load(ordering: .acquiring) }, logger: logger.child("ferry.admin"))
            }
        } catch {
            logger.critical("invalid configuration", metadata: ["error": "\(error.message)"])
            return 2
        }

        let service = ServiceIntegration(queue: queue, logger: logger)
        let liveInputs = LiveInputs(ingest: inputs.lazy.compactMap { $0 as? IngestServer }.first,
                                    syslog: inputs.lazy.compactMap { $0 as? SyslogServer }.first,
                                    relp: inputs.lazy.compactMap { $0 as? RELPServer }.first)

        // Shut down in reverse order: the inputs first (their in-flight commits complete), then the outputs, then admin.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let admin { services.append(.init(service: admin)) }
        for output in outputs { services.append(.init(service: output)) }
        for input in inputs.reversed() { services.append(.init(service: input)) }
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger.child("ferry.lifecycle"))
        // The graceful limit ends before the watchdog's, so that a slow stop is cancelled and still closes the
        // queue cleanly. No cancellation limit: ServiceLifecycle ends a group past it with fatalError (a trap
        // and a core dump); the watchdog's `_exit` at `shutdownTimeout` bounds a cancellation that hangs.
        groupConfiguration.maximumGracefulShutdownDuration = max(shutdownTimeout - .seconds(5), shutdownTimeout / 2)
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
                // However the group ended, what comes after (the other tasks, the queue's close, the
                // process's exit) is bounded too.
                ShutdownWatchdog.arm(limit: shutdownTimeout)
                return true
            }
            tasks.addTask { [inputs] in
                var lines: [String] = []
                for input in inputs { lines.append(await input.started()) }
                state.inputsStarted.store(true, ordering: .releasing)
                banner(configuration, inputs: lines, adminPort: await admin?.listeningPort(), logger: logger)
                // Start-up's code is not needed again: unmap it (it stays in the page cache), so that the
                // resident set is what the agent runs (docs/ARCHITECTURE.md, "Footprint").
                let released = CodePages.release()
                logger.debug("code pages unmapped", metadata: ["ferry.bytes": "\(released)"])
                await service.readyThenMonitor(queue: queue)
                return false
            }
            tasks.addTask {
                // Code that ran once since (a first request of its kind, a reload) is unmapped again.
                while (try? await Task.sleep(for: CodePages.interval)) != nil {
                    CodePages.release()
                }
                return false
            }
            tasks.addTask {
                // The first signal starts the graceful shutdown (ServiceGroup); a second one ends the process.
                // SIGHUP (`systemctl reload`) reloads what can be reloaded; it never ends the process.
                var count = 0
                var running = configuration
                for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup) {
                    if signal == .sighup {
                        service.reloadBegins()
                        if let reload {
                            let outcome = reloadConfiguration(running: running, reload, logger: logger, replaceOutput: { output throws in
                                guard let supervised = supervised.first(where: { $0.name == output.name }) else { return }
                                let consumer = try queue.consumer(named: output.name)
                                supervised.replace(make: try outputFactory(output.kind, consumer: consumer, logger: logger.child("ferry.output.\(output.name)"), replacing: true))
                            }, applyInput: { running, fresh in
                                applyInputSettings(running: running, fresh: fresh, servers: liveInputs)
                            }, reloadListenerIdentities: { ListenerIdentities.shared.reloadAll() })
                            running = outcome.now
                            countReload(outcome.result)
                        } else {
                            logger.warning("SIGHUP received: this agent has no configuration to reload; the running configuration stays")
                        }
                        service.reloadEnds()
                        continue
                    }
                    count += 1
                    if count == 1 {
                        service.stopping()
                        logger.notice("stopping: no new events are taken, requests in flight finish, undelivered records stay queued; send the signal again to stop at once")
                        // From here on the second signal and the limit end the process whatever it awaits.
                        ShutdownWatchdog.arm(limit: shutdownTimeout)
                    } else {
                        logger.warning("second signal: exiting now; every acknowledged event is on disk and will be delivered after the next start")
                        _exit(130)
                    }
                }
                return false
            }
            while let groupEnded = await tasks.next(), !groupEnded {}
            tasks.cancelAll()
        }
        service.stopping()
        logger.notice("stopped", metadata: [
            "ferry.queue.records": "\(queue.stats.records)", "ferry.queue.events": "\(queue.stats.events)",
        ])
        return state.exitStatus.withLock { $0 }
    }

    /// The output service of one configured output, delivering what `consumer` has not settled.
    /// How a `SupervisedOutput` builds `kind`: built once now, so that a bad setting fails here (exit
    /// status 2 at the start, a refused reload), and that instance runs first; each restart after a
    /// failure builds a new one. Every instance but a start's first leases again what the one before held
    /// (`Consumer.restartLeases`, called when it is built, which is after the one before stopped).
    static func outputFactory(_ kind: AgentConfiguration.Output, consumer: Consumer, logger: Logger,
                              replacing: Bool) throws -> @Sendable () throws -> any Service {
        let first = Mutex<(any Service)?>(try makeOutput(kind, consumer: consumer, logger: logger))
        return {
            if let made = first.withLock({ made in defer { made = nil }; return made }) {
                if replacing { consumer.restartLeases() }
                return made
            }
            consumer.restartLeases()
            return try makeOutput(kind, consumer: consumer, logger: logger)
        }
    }

    static func makeOutput(_ kind: AgentConfiguration.Output, consumer: Consumer, logger: Logger) throws -> any Service {
        switch kind {
        case .http(let http): try HTTPForwarder(consumer: consumer, configuration: http, logger: logger)
        case .file(let file): try FileForwarder(consumer: consumer, configuration: file, logger: logger)
        case .kafka(let kafka): try KafkaOutput(consumer: consumer, configuration: kafka, logger: logger)
        }
    }

    /// State shared by the agent's tasks.
    final class RunState: Sendable {
        /// Every input takes events (listens, or has its source open): `/ready`.
        let inputsStarted = Atomic<Bool>(false)
        let exitStatus = Mutex<Int32>(0)
    }

    static func banner(_ configuration: AgentConfiguration, inputs: [String], adminPort: Int?, logger: Logger) {
        let destinations = configuration.outputs.map { output -> String in
            let name = configuration.outputs.count > 1 ? "\(output.name): " : ""
            switch output.kind {
            case .http(let http): return name + "forwarded to \(http.hosts.joined(separator: ", "))"
            case .file(let file):
                return name + "written to \(file.path) (file output)" + (configuration.outputs.count == 1 ? "; to forward them instead, start with --forward host:port[,host:port]" : "")
            case .kafka(let kafka): return name + "produced to Kafka topic \(kafka.topic) on \(kafka.connection.brokers.joined(separator: ", "))"
            }
        }
        var lines = ["Ferry \(version) is running."]
        lines += inputs.map { "  \($0)" }
        if inputs.isEmpty { lines.append("  No input is configured: nothing comes in.") }
        lines += [
            "  Queue:        \(configuration.dataDirectory) (events are fsynced before they are acknowledged)",
            "  Events are    \(destinations.joined(separator: "\n                "))",
        ]
        if let admin = configuration.admin, let adminPort {
            lines.append("  Admin:        http://\(admin.host):\(adminPort)/health /ready /metrics /queue")
        }
        writeStandardError(lines.joined(separator: "\n") + "\n")
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
