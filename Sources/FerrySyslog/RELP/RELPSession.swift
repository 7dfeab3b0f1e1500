package import NIOCore

/// The server side of one RELP session as a state machine without I/O: it is told what arrived and what the
/// store did, and answers with actions (what to send, what to store, whether to close), in the manner of
/// AsyncHTTPClient's `HTTPRequestStateMachine`. Its tests compare actions exactly.
///
/// Guarantees:
/// - **`rsp 200 OK` for a `syslog` frame only after the store call that held its message completed**, i.e.
///   after the queue's commit. A failed store answers nothing: the session closes and the client sends its
///   unacknowledged messages again (RELP's own recovery).
/// - Answers leave in the order of the transaction numbers, whatever the commands (an `open` or `close`
///   answer waits behind earlier `syslog` answers).
/// - Windows: many `syslog` frames may be in flight. Those that arrived while no store call was running are
///   handed to the store together (`readComplete`, or as soon as `maxBatchBytes` are waiting), so that
///   concurrent connections meet in the queue's group commit instead of committing message by message.
///   One store call at a time per session; while one runs, the next batch gathers, and reading stops when it
///   reaches `maxBatchBytes` (backpressure: `readsAllowed`).
/// - `close`: answered (after every earlier answer), then the `serverclose` hint, then the connection
///   closes. The server's own shutdown (`quiesce`) answers what was received, then hints and closes.
/// - Protocol errors (a wrong transaction number, a command before `open`, an unknown command, a malformed
///   frame) end the session: what was received before is still stored and answered; a command with a valid
///   transaction number gets `500 <reason>`; then the hint and the close. Frames after that are ignored.
package struct RELPSession: Sendable {
    package struct Configuration: Sendable, Hashable {
        /// Bytes of `syslog` data that may wait for the next store call; reading stops beyond it.
        package var maxBatchBytes: Int = 1 << 20
        /// `relp_software` in the answer to `open`.
        package var software: String = "ferry"

        package init() {}
    }

    /// A `syslog` message to store.
    package struct Message: Hashable, Sendable {
        package var txnr: Int
        package var data: ByteBuffer

        package init(txnr: Int, data: ByteBuffer) {
            self.txnr = txnr
            self.data = data
        }
    }

    /// A frame for the client.
    package enum Output: Hashable, Sendable {
        /// `TXNR rsp DATALEN DATA`.
        case response(txnr: Int, data: String)
        /// `0 serverclose 0`: the hint librelp clients expect before the server closes.
        case serverClose
    }

    package struct Actions: Hashable, Sendable {
        /// Frames to send now, in order.
        package var send: [Output] = []
        /// Messages to hand to the store now (no other store call is running).
        package var store: [Message]?
        /// Close the connection once `send` is written.
        package var close = false
        /// The protocol error that ends the session, for counting and logging.
        package var error: RELPProtocolError?

        package init(send: [Output] = [], store: [Message]? = nil, close: Bool = false, error: RELPProtocolError? = nil) {
            self.send = send
            self.store = store
            self.close = close
            self.error = error
        }
    }

    private enum State: Hashable, Sendable {
        case awaitingOpen
        case open
        /// No more frames are taken; the session closes once everything taken is answered.
        case closing
        case closed
    }

    /// An answer in transaction order; `data` is nil while its message waits for the commit.
    private struct Answer: Hashable, Sendable {
        var txnr: Int
        var data: String?
    }

    package let configuration: Configuration
    private var state = State.awaitingOpen
    private var expectedTxnr = 1
    private var answers = CircularBuffer<Answer>()
    private var unsent: [Message] = []
    private var unsentBytes = 0
    /// Messages in the running store call, or nil when none runs.
    private var storing: Int?

    package init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Whether the connection may read more: not while the next batch is full behind a running store call,
    /// and not once the session is closing.
    package var readsAllowed: Bool {
        switch state {
        case .awaitingOpen, .open: !(storing != nil && unsentBytes >= configuration.maxBatchBytes)
        case .closing, .closed: false
        }
    }

    /// Whether nothing is waiting for the store: an idle timeout may close the connection.
    package var isIdle: Bool { storing == nil && unsent.isEmpty }

    package mutating func received(_ frame: RELPFrame) -> Actions {
        guard state == .awaitingOpen || state == .open else { return Actions() }
        guard frame.txnr == expectedTxnr else {
            return fail(RELPProtocolError(.unexpectedTxnr, "transaction number \(frame.txnr) where \(expectedTxnr) was due"), answering: nil)
        }
        expectedTxnr = expectedTxnr == RELPFrame.maxTxnr ? 1 : expectedTxnr + 1
        var actions = Actions()
        switch frame.command {
        case .open:
            guard state == .awaitingOpen else {
                return fail(RELPProtocolError(.notOpen, "a second open in one session"), answering: frame.txnr)
            }
            state = .open
            let offer = "relp_version=0\nrelp_software=\(configuration.software)\ncommands=syslog"
            answers.append(Answer(txnr: frame.txnr, data: "200 OK\n" + offer))
        case .syslog:
            guard state == .open else {
                return fail(RELPProtocolError(.notOpen, "syslog before open"), answering: frame.txnr)
            }
            answers.append(Answer(txnr: frame.txnr, data: nil))
            unsent.append(Message(txnr: frame.txnr, data: frame.data))
            unsentBytes += frame.data.readableBytes
            if storing == nil, unsentBytes >= configuration.maxBatchBytes { startStore(&actions) }
        case .close:
            guard state == .open else {
                return fail(RELPProtocolError(.notOpen, "close before open"), answering: frame.txnr)
            }
            answers.append(Answer(txnr: frame.txnr, data: ""))
            state = .closing
            if storing == nil, !unsent.isEmpty { startStore(&actions) }
        case .other(let name):
            return fail(RELPProtocolError(.unknownCommand, "command '\(name)' is not taken by a server"), answering: frame.txnr)
        }
        flush(&actions)
        return actions
    }

    /// The decoder found a frame it cannot read.
    package mutating func malformed(_ error: RELPProtocolError) -> Actions {
        guard state == .awaitingOpen || state == .open else { return Actions() }
        return fail(error, answering: nil)
    }

    /// The end of a read burst: hand what arrived to the store, if no store call is running.
    package mutating func readComplete() -> Actions {
        var actions = Actions()
        if storing == nil, !unsent.isEmpty, state != .closed { startStore(&actions) }
        return actions
    }

    /// The running store call committed: answer its messages.
    package mutating func storeSucceeded() -> Actions {
        guard let count = storing else { preconditionFailure("storeSucceeded without a running store call") }
        storing = nil
        var actions = Actions()
        guard state != .closed else { return actions }
        var marked = 0
        for index in answers.indices where marked < count && answers[index].data == nil {
            answers[index].data = "200 OK"
            marked += 1
        }
        if !unsent.isEmpty { startStore(&actions) }
        flush(&actions)
        return actions
    }

    /// The running store call failed: nothing of it is stored, nothing is answered; the session ends and the
    /// client sends its unacknowledged messages again on its next connection.
    package mutating func storeFailed() -> Actions {
        storing = nil
        guard state != .closed else { return Actions() }
        state = .closed
        answers.removeAll()
        unsent.removeAll()
        unsentBytes = 0
        return Actions(send: [.serverClose], close: true)
    }

    /// The server shuts down: take no more frames, store and answer what was taken, then hint and close.
    package mutating func quiesce() -> Actions {
        var actions = Actions()
        switch state {
        case .awaitingOpen, .open:
            state = .closing
            if storing == nil, !unsent.isEmpty { startStore(&actions) }
            flush(&actions)
        case .closing, .closed:
            break
        }
        return actions
    }

    /// The connection is gone: nothing more can be answered. Messages not yet handed to the store are not
    /// stored (the client never got an answer for them and sends them again).
    package mutating func connectionClosed() {
        state = .closed
        answers.removeAll()
        unsent.removeAll()
        unsentBytes = 0
    }

    private mutating func fail(_ error: RELPProtocolError, answering txnr: Int?) -> Actions {
        var actions = Actions(error: error)
        if let txnr { answers.append(Answer(txnr: txnr, data: "500 " + error.detail)) }
        state = .closing
        if storing == nil, !unsent.isEmpty { startStore(&actions) }
        flush(&actions)
        return actions
    }

    private mutating func startStore(_ actions: inout Actions) {
        actions.store = unsent
        storing = unsent.count
        unsent = []
        unsentBytes = 0
    }

    /// Sends the answers that are ready at the head; when closing and nothing is left, hints and closes.
    private mutating func flush(_ actions: inout Actions) {
        while let first = answers.first, let data = first.data {
            actions.send.append(.response(txnr: first.txnr, data: data))
            answers.removeFirst()
        }
        if state == .closing, answers.isEmpty, storing == nil, unsent.isEmpty {
            state = .closed
            actions.send.append(.serverClose)
            actions.close = true
        }
    }
}

extension RELPSession.Output {
    /// Appends the frame's bytes to `buffer`.
    package func write(to buffer: inout ByteBuffer) {
        switch self {
        case .response(let txnr, let data):
            RELPFrame.write(txnr: txnr, command: "rsp", data: data.utf8, to: &buffer)
        case .serverClose:
            RELPFrame.write(txnr: 0, command: "serverclose", data: EmptyCollection<UInt8>(), to: &buffer)
        }
    }
}
