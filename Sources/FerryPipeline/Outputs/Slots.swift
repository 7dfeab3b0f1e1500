import Synchronization

/// A counting semaphore for async tasks: bounds the requests in flight.
package final class Slots: Sendable {
    private let state: Mutex<(free: Int, closed: Bool, waiting: [CheckedContinuation<Bool, Never>])>

    package init(count: Int) { state = Mutex((count, false, [])) }

    /// Takes a slot; false once closed.
    package func acquire() async -> Bool {
        await withCheckedContinuation { continuation in
            let result = state.withLock { state -> Bool? in
                if state.closed { return false }
                if state.free > 0 { state.free -= 1; return true }
                state.waiting.append(continuation)
                return nil
            }
            if let result { continuation.resume(returning: result) }
        }
    }

    package func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if !state.waiting.isEmpty { return state.waiting.removeFirst() }
            state.free += 1
            return nil
        }
        waiter?.resume(returning: true)
    }

    package func close() {
        let waiting = state.withLock { state in
            state.closed = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume(returning: false) }
    }
}
