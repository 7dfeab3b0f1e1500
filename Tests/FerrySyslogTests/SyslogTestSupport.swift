@testable import FerrySyslog
import FerryTestSupport
import FerryWire
import Foundation
import Logging
import MetricsTestKit
import Synchronization

/// An in-memory store for the servers: records each batch's events as text, can hold calls until released
/// (a full queue) or fail them (a failing queue). State is read synchronously, for `eventually`.
final class MemoryStore: Sendable {
    private struct State {
        var events: [String] = []
        var batchSizes: [Int] = []
        var started = 0
        var held = false
        var failing = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var events: [String] { state.withLock { $0.events } }
    var batchSizes: [Int] { state.withLock { $0.batchSizes } }
    /// Store calls that have begun (held ones included).
    var started: Int { state.withLock { $0.started } }

    /// Later calls wait until `release`.
    func hold() { state.withLock { $0.held = true } }

    func release() {
        let waiters = state.withLock { state in
            state.held = false
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func fail(_ failing: Bool) { state.withLock { $0.failing = failing } }

    var store: SyslogStore {
        { batch in try await self.append(batch) }
    }

    private func append(_ batch: SyslogEventBatch) async throws {
        await withCheckedContinuation { continuation in
            let wait = state.withLock { state in
                state.started += 1
                if state.held { state.waiters.append(continuation) }
                return state.held
            }
            if !wait { continuation.resume() }
        }
        var texts: [String] = []
        batch.forEach { event, _ in texts.append(String(decoding: event, as: UTF8.self)) }
        try state.withLock { state in
            if state.failing { throw StoreFailure() }
            state.events += texts
            state.batchSizes.append(texts.count)
        }
    }

    struct StoreFailure: Error {}
}

let quietLogger = Logger(label: "ferry-syslog-test") { _ in SwiftLogNoOpLogHandler() }

/// A decoded event, for assertions on fields.
func fields(_ event: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any] ?? [:]
}

/// Runs `logger` (util-linux) with `arguments`, and `input` on its standard input when given.
func runLogger(_ arguments: [String], input: String? = nil) async throws {
    let result = try await run("/usr/bin/logger", arguments, input: input.map { Data($0.utf8) })
    if result.status != 0 { throw LoggerFailed(status: result.status, errors: result.errors) }
}

struct LoggerFailed: Error, CustomStringConvertible {
    let status: Int32
    let errors: String
    var description: String { "logger exited with \(status): \(errors)" }
}
