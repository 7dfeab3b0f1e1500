@testable import FerrySyslog
import NIOCore
import NIOEmbedded
import Testing

/// RELP frames and the server session, without I/O: exact actions for each event.
@Suite struct RELPTests {
    static let clientOffer = "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"
    static let serverOffer = "200 OK\nrelp_version=0\nrelp_software=ferry\ncommands=syslog"

    func parse(_ text: String, max: Int = 128) -> RELPFrameParser.Next {
        Array(text.utf8).withUnsafeBytes { RELPFrameParser(maxDataSize: max).next(in: $0) }
    }

    @Test func parsesFramesWithAndWithoutData() {
        let open = "1 open \(Self.clientOffer.utf8.count) \(Self.clientOffer)\n"
        #expect(parse(open) == .frame(txnr: 1, command: 2..<6, data: 10..<(10 + Self.clientOffer.utf8.count), consumed: open.utf8.count))
        #expect(parse("2 syslog 5 hello\n") == .frame(txnr: 2, command: 2..<8, data: 11..<16, consumed: 17))
        #expect(parse("3 close 0\n") == .frame(txnr: 3, command: 2..<7, data: 9..<9, consumed: 10))
        // Data may hold LFs: DATALEN decides.
        #expect(parse("4 syslog 3 a\nb\n") == .frame(txnr: 4, command: 2..<8, data: 11..<14, consumed: 15))
    }

    @Test func everyPrefixOfAFrameNeedsMoreData() {
        let frame = "123 syslog 11 <13>hello w\n"
        for cut in 0..<frame.utf8.count {
            #expect(parse(String(frame.utf8.prefix(cut))!) == .needMoreData, "at \(cut)")
        }
    }

    @Test func malformedFrames() {
        #expect(parse("x open 0\n") == .malformed(.invalidFrame))
        #expect(parse(" 1 open 0\n") == .malformed(.invalidFrame))
        #expect(parse("1 op3n 0\n") == .malformed(.invalidFrame))
        #expect(parse("1 open 0 \n") == .malformed(.invalidFrame))
        #expect(parse("1 syslog 3 abcd\n") == .malformed(.invalidFrame))
        #expect(parse("1 syslog 3abc\n") == .malformed(.invalidFrame))
        #expect(parse("1234567890 open 0\n") == .malformed(.invalidFrame))
        #expect(parse("1 " + String(repeating: "a", count: 33) + " 0\n") == .malformed(.invalidFrame))
        #expect(parse("1 syslog 1234567890 ") == .malformed(.invalidFrame))
        #expect(parse("1 syslog 129 ", max: 128) == .malformed(.tooLarge))
    }

    @Test func writesFramesAsLibrelpDoes() {
        var buffer = ByteBuffer()
        RELPSession.Output.response(txnr: 7, data: "200 OK").write(to: &buffer)
        RELPSession.Output.response(txnr: 8, data: "").write(to: &buffer)
        RELPSession.Output.serverClose.write(to: &buffer)
        #expect(String(buffer: buffer) == "7 rsp 6 200 OK\n8 rsp 0\n0 serverclose 0\n")
    }

    // MARK: Session

    func frame(_ txnr: Int, _ command: RELPFrame.Command, _ data: String = "") -> RELPFrame {
        RELPFrame(txnr: txnr, command: command, data: ByteBuffer(string: data))
    }

    func message(_ txnr: Int, _ data: String) -> RELPSession.Message {
        RELPSession.Message(txnr: txnr, data: ByteBuffer(string: data))
    }

    func opened(maxBatchBytes: Int = 1 << 20) -> RELPSession {
        var configuration = RELPSession.Configuration()
        configuration.maxBatchBytes = maxBatchBytes
        var session = RELPSession(configuration: configuration)
        #expect(session.received(frame(1, .open, Self.clientOffer)) == .init(send: [.response(txnr: 1, data: Self.serverOffer)]))
        return session
    }

    @Test func answersSyslogOnlyAfterTheStoreCallCompleted() {
        var session = opened()
        #expect(session.received(frame(2, .syslog, "<13>a")) == .init())
        #expect(session.received(frame(3, .syslog, "<13>b")) == .init())
        #expect(session.received(frame(4, .syslog, "<13>c")) == .init())
        // The whole read burst goes to the store in one call; nothing is answered yet.
        #expect(session.readComplete() == .init(store: [message(2, "<13>a"), message(3, "<13>b"), message(4, "<13>c")]))
        #expect(session.readComplete() == .init())
        #expect(!session.isIdle)
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 2, data: "200 OK"), .response(txnr: 3, data: "200 OK"), .response(txnr: 4, data: "200 OK")]))
        #expect(session.isIdle)
    }

    @Test func aWindowGathersTheNextBatchWhileOneIsStored() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        #expect(session.readComplete() == .init(store: [message(2, "a")]))
        _ = session.received(frame(3, .syslog, "b"))
        _ = session.received(frame(4, .syslog, "c"))
        // One store call at a time: 3 and 4 wait.
        #expect(session.readComplete() == .init())
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 2, data: "200 OK")], store: [message(3, "b"), message(4, "c")]))
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 3, data: "200 OK"), .response(txnr: 4, data: "200 OK")]))
    }

    @Test func readingStopsWhenTheNextBatchIsFullBehindARunningStore() {
        var session = opened(maxBatchBytes: 10)
        _ = session.received(frame(2, .syslog, "12345"))
        _ = session.readComplete()
        #expect(session.readsAllowed)
        _ = session.received(frame(3, .syslog, "12345"))
        #expect(session.readsAllowed)
        _ = session.received(frame(4, .syslog, "12345"))
        #expect(!session.readsAllowed)
        #expect(session.storeSucceeded().store == [message(3, "12345"), message(4, "12345")])
        #expect(session.readsAllowed)
    }

    @Test func aFullBatchGoesToTheStoreWithoutWaitingForTheEndOfTheRead() {
        var session = opened(maxBatchBytes: 8)
        #expect(session.received(frame(2, .syslog, "1234")) == .init())
        #expect(session.received(frame(3, .syslog, "5678")) == .init(store: [message(2, "1234"), message(3, "5678")]))
    }

    @Test func closeIsAnsweredAfterEarlierMessagesThenHintedAndClosed() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        // close in the same read: the pending message goes to the store, the close answer waits behind it.
        #expect(session.received(frame(3, .close)) == .init(store: [message(2, "a")]))
        #expect(!session.readsAllowed)
        #expect(session.readComplete() == .init())
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 2, data: "200 OK"), .response(txnr: 3, data: ""), .serverClose], close: true))
    }

    @Test func closeWithNothingPendingIsAnsweredAtOnce() {
        var session = opened()
        #expect(session.received(frame(2, .close)) == .init(send: [.response(txnr: 2, data: ""), .serverClose], close: true))
        #expect(session.received(frame(3, .syslog, "late")) == .init())
    }

    @Test func aFailedStoreAnswersNothingAndEndsTheSession() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        _ = session.readComplete()
        _ = session.received(frame(3, .syslog, "b"))
        #expect(session.storeFailed() == .init(send: [.serverClose], close: true))
        #expect(session.readComplete() == .init())
    }

    @Test func aWrongTransactionNumberEndsTheSessionAfterStoringWhatCameBefore() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        let actions = session.received(frame(9, .syslog, "b"))
        #expect(actions.error?.kind == .unexpectedTxnr)
        #expect(actions.store == [message(2, "a")])
        #expect(actions.send.isEmpty && !actions.close)
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 2, data: "200 OK"), .serverClose], close: true))
    }

    @Test func commandsBeforeOpenAndUnknownCommandsAreAnswered500AndEndTheSession() {
        var fresh = RELPSession()
        let early = fresh.received(frame(1, .syslog, "a"))
        #expect(early.error?.kind == .notOpen)
        #expect(early.send == [.response(txnr: 1, data: "500 syslog before open"), .serverClose] && early.close)

        var session = opened()
        let unknown = session.received(frame(2, .other("starttls")))
        #expect(unknown.error?.kind == .unknownCommand)
        #expect(unknown.send == [.response(txnr: 2, data: "500 command 'starttls' is not taken by a server"), .serverClose] && unknown.close)

        var twice = opened()
        #expect(twice.received(frame(2, .open, Self.clientOffer)).error?.kind == .notOpen)
    }

    @Test func aMalformedFrameEndsTheSessionUnanswered() {
        var session = opened()
        let actions = session.malformed(RELPProtocolError(.invalidFrame, "garbage"))
        #expect(actions == .init(send: [.serverClose], close: true, error: RELPProtocolError(.invalidFrame, "garbage")))
    }

    @Test func quiesceStoresAndAnswersWhatWasTakenThenHintsAndCloses() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        _ = session.readComplete()
        _ = session.received(frame(3, .syslog, "b"))
        #expect(session.quiesce() == .init())
        #expect(!session.readsAllowed)
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 2, data: "200 OK")], store: [message(3, "b")]))
        #expect(session.storeSucceeded() == .init(send: [.response(txnr: 3, data: "200 OK"), .serverClose], close: true))
        var idle = opened()
        #expect(idle.quiesce() == .init(send: [.serverClose], close: true))
    }

    @Test func aStoreThatCompletesAfterTheConnectionClosedSendsNothing() {
        var session = opened()
        _ = session.received(frame(2, .syslog, "a"))
        _ = session.readComplete()
        session.connectionClosed()
        #expect(session.storeSucceeded() == .init())
    }
}
