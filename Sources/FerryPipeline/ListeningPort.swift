import Synchronization

/// The port a server listens on, for callers that ask before it is bound (port 0): they wait until it is.
/// Shared by the ingest, the admin server and the tests' stub receivers.
package final class ListeningPort: Sendable {
    private struct State {
        var port: Int?
        var waiters: [UInt64: CheckedContinuation<Int, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var cancelled: Set<UInt64> = []
    }

    private let state = Mutex(State())

    package init() {}

    /// The port, once the server listens; 0 when the waiting task is cancelled first. A server that
    /// never listens (it failed, or Ferry stopped before) must not hold its waiters: the agent's start-up
    /// banner waits here, and an unresumed wait kept the agent's task group, and so the process, alive.
    package var value: Int {
        get async {
            let id = state.withLock { state in
                defer { state.nextWaiter += 1 }
                return state.nextWaiter
            }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let answer = state.withLock { state -> Int? in
                        if let port = state.port { return port }
                        if state.cancelled.remove(id) != nil { return 0 }
                        state.waiters[id] = continuation
                        return nil
                    }
                    if let answer { continuation.resume(returning: answer) }
                }
            } onCancel: {
                let waiter = state.withLock { state -> CheckedContinuation<Int, Never>? in
                    if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                    if state.port == nil { state.cancelled.insert(id) }  // cancelled before it waited
                    return nil
                }
                waiter?.resume(returning: 0)
            }
        }
    }

    /// Called once the server listens: answers everyone waiting.
    package func set(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: port) }
    }
}
