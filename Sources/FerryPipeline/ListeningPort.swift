import Synchronization

/// The port a server listens on, for callers that ask before it is bound (port 0): they wait until it is.
/// Shared by the ingest, the admin server and the tests' stub receivers.
package final class ListeningPort: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    package init() {}

    /// The port, once the server listens.
    package var value: Int {
        get async {
            await withCheckedContinuation { continuation in
                let port = state.withLock { state -> Int? in
                    if state.port == nil { state.waiters.append(continuation) }
                    return state.port
                }
                if let port { continuation.resume(returning: port) }
            }
        }
    }

    /// Called once the server listens: answers everyone waiting.
    package func set(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }
}
