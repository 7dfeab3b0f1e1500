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
    private let make: @Sendable () throws -> any Service
    private let backoff: Backoff
    private let logger: Logger
    private let state = Mutex<(status: Status, current: (any Service)?)>((Status(), nil))

    /// `make` builds the output, again for each restart; a failure to build counts as a failure of the output.
    package init(name: String, backoff: Backoff = Backoff(base: .seconds(1), cap: .seconds(60)), logger: Logger,
                 make: @escaping @Sendable () throws -> any Service) {
        self.name = name
        self.make = make
        self.backoff = backoff
        self.logger = logger
    }

    package var status: Status { state.withLock { $0.status } }

    /// The running instance (to read its own status, e.g. an http output's hosts).
    package var current: (any Service)? { state.withLock { $0.current } }

    package func run() async throws {
        var failures = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let reason: String
            let started = ContinuousClock.now
            do {
                let output = try make()
                state.withLock { $0.current = output; $0.status.state = .running }
                try await output.run()
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                reason = "the output stopped by itself"
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
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
