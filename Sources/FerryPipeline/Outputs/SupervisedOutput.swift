package import Logging
package import ServiceLifecycle
import Synchronization

/// Runs one output and restarts it, with the one backoff, when it fails: a file output on a full disk, a
/// Kafka producer's fatal error, anything its `run` throws. The other outputs and the inputs go on; the
/// output's records wait in the queue under its own cursor, so a restart loses nothing.
package final class SupervisedOutput: Service, Sendable {
    /// What the output is doing, for `/queue`, `/metrics` and `ferry-tools`.
    package struct Status: Sendable, Hashable {
        package enum State: String, Sendable, Hashable {
            /// Delivering (or waiting for records).
            case running
            /// Failed; restarted after the backoff.
            case failed
            /// Ferry is stopping.
            case stopped
        }
        package var state: State = .running
        /// Why it last failed, nil if it never did.
        package var lastError: String?
        /// Restarts since Ferry started.
        package var restarts = 0
    }

    package let name: String
    private let backoff: Backoff
    private let logger: Logger
    private let state = Mutex<(status: Status, current: (any Service)?)>((Status(), nil))
    /// How the output is built, the running instance's task, and whether a new `make` waits to replace it.
    private let instance: Mutex<(make: @Sendable () throws -> any Service, task: Task<Void, any Error>?, replaced: Bool)>

    /// `make` builds the output, again for each restart; a failure to build counts as a failure of the output.
    package init(name: String, backoff: Backoff = Backoff(base: .seconds(1), cap: .seconds(60)), logger: Logger,
                 make: @escaping @Sendable () throws -> any Service) {
        self.name = name
        self.instance = Mutex((make, nil, false))
        self.backoff = backoff
        self.logger = logger
    }

    package var status: Status { state.withLock { $0.status } }

    /// The running instance (to read its own status, e.g. an http output's hosts).
    package var current: (any Service)? { state.withLock { $0.current } }

    /// Replaces how the output is built (a reload changed its settings): the running instance is
    /// cancelled (an http output gives its unanswered requests back to the queue, which hands them to the
    /// new instance as the same batches) and the new one starts at once, with no backoff and no failure
    /// counted. The new `make` must lease again what the old instance held (`Consumer.restartLeases`).
    package func replace(make: @escaping @Sendable () throws -> any Service) {
        let task = instance.withLock { instance in
            instance.make = make
            instance.replaced = true
            return instance.task
        }
        task?.cancel()
    }

    package func run() async throws {
        var failures = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let reason: String
            let started = ContinuousClock.now
            do {
                let make = instance.withLock { instance in
                    instance.replaced = false
                    return instance.make
                }
                let output = try make()
                state.withLock { $0.current = output; $0.status.state = .running }
                // Its own task, so that `replace` can stop this instance alone; task-local values (the
                // service group's graceful shutdown) are inherited, cancellation is passed on.
                let task = Task { try await output.run() }
                // A `replace` between the build and here found no task to cancel: cancel it now.
                if instance.withLock({ $0.task = task; return $0.replaced }) { task.cancel() }
                do {
                    try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
                } catch is CancellationError {}
                instance.withLock { $0.task = nil }
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                if instance.withLock({ $0.replaced }) {
                    logger.notice("output restarted with its new settings", metadata: ["ferry.output": "\(name)"])
                    continue
                }
                reason = "the output stopped by itself"
            } catch {
                instance.withLock { $0.task = nil }
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                if instance.withLock({ $0.replaced }) {
                    logger.notice("output restarted with its new settings", metadata: ["ferry.output": "\(name)"])
                    continue
                }
                reason = "\(error)"
            }
            // A failure after a long healthy run starts the backoff over.
            failures = ContinuousClock.now - started > .seconds(60) ? 1 : failures + 1
            let delay = backoff.delay(attempt: failures)
            state.withLock {
                $0.status.state = .failed
                $0.status.lastError = reason
                $0.status.restarts += 1
                $0.current = nil
            }
            logger.error("output failed; the other outputs and the inputs go on, and it restarts after a backoff", metadata: [
                "ferry.output": "\(name)", "ferry.output.error": "\(reason)", "ferry.output.restart_in_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)",
            ])
            // The wait ends early when Ferry stops.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
        state.withLock { $0.status.state = .stopped }
    }
}
