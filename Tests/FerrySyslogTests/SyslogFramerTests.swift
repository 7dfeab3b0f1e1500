@testable import FerrySyslog
import NIOCore
import Testing

/// TCP framing: octet counting only for digits, a space and `<`; everything else is a line.
@Suite struct SyslogFramerTests {
    /// Frames of `stream` as text, and how it ended (nil: all consumed; else the last `next` result).
    func frames(_ stream: String, max: Int = 64, atEnd: Bool = false) -> (frames: [String], end: SyslogFramer.Next?) {
        var framer = SyslogFramer(maxMessageSize: max)
        var bytes = Array(stream.utf8)
        var out: [String] = []
        while true {
            let next = bytes.withUnsafeBytes { framer.next(in: $0, atEnd: atEnd) }
            guard case .frame(let message, let consumed) = next else { return (out, bytes.isEmpty && next == .needMoreData ? nil : next) }
            out.append(String(decoding: bytes[message], as: UTF8.self))
            bytes.removeFirst(consumed)
        }
    }

    @Test func aLineStartingWithANumberIsALineNotAnOctetCount() {
        #expect(frames("42 is the answer\n").frames == ["42 is the answer"])
        #expect(frames("42\n").frames == ["42"])
        #expect(frames("42x\n").frames == ["42x"])
    }

    @Test func digitsSpaceAndPRIMeanOctetCounting() {
        #expect(frames("9 <13>hello9 <13>world").frames == ["<13>hello", "<13>world"])
        // A count that covers a LF: the LF is part of the message (the parser drops trailing ones).
        #expect(frames("10 <13>hello\n").frames == ["<13>hello\n"])
        // A LF after a counted frame is an empty line (callers skip empty frames).
        #expect(frames("9 <13>hello\n9 <13>world").frames == ["<13>hello", "", "<13>world"])
    }

    @Test func framingIsDecidedPerFrame() {
        #expect(frames("<13>line one\n9 <13>hello<14>line two\n").frames == ["<13>line one", "<13>hello", "<14>line two"])
    }

    @Test func trailingCRAndNULAreDroppedAndNULEndsALine() {
        #expect(frames("<13>a\r\n<13>b\r\u{0}\n").frames == ["<13>a", "<13>b", ""])
        #expect(frames("<13>a\u{0}<13>b\u{0}").frames == ["<13>a", "<13>b"])
    }

    @Test func incompleteFramesWaitForMoreData() {
        for partial in ["12", "12 ", "12 <13>", "<13>no newline yet", "9 <13>hel"] {
            let (out, end) = frames(partial)
            #expect(out.isEmpty && end == .needMoreData, "\(partial)")
        }
    }

    @Test func atTheEndALastLineIsAFrameAndACutCountedFrameIsMalformed() {
        #expect(frames("<13>last", atEnd: true).frames == ["<13>last"])
        #expect(frames("12", atEnd: true).frames == ["12"])
        #expect(frames("9 <13>hel", atEnd: true).end == .malformed(.truncated))
    }

    @Test func malformedCountsAndOversizedFramesCloseTheConnection() {
        #expect(frames("0 <13>").end == .malformed(.invalidOctetCount))
        #expect(frames("09 <13>hello").end == .malformed(.invalidOctetCount))
        #expect(frames("65 <13>").end == .malformed(.tooLarge))
        #expect(frames("99999999999999999999999 <13>").end == .malformed(.tooLarge))
        #expect(frames("64 <13>", max: 64).end == .needMoreData)
        // Lines: 64 bytes pass, 65 do not, with or without their LF yet.
        let line64 = String(repeating: "a", count: 64)
        #expect(frames(line64 + "\n").frames == [line64])
        #expect(frames(line64 + "a\n").end == .malformed(.tooLarge))
        #expect(frames(line64 + "aaaa").end == .malformed(.tooLarge))
        #expect(frames(String(repeating: "7", count: 80)).end == .malformed(.tooLarge))
    }

    // MARK: Read by read

    /// The events `SyslogStreamReader` makes of `chunks` read one after the other and then the stream's
    /// end, as JSON text, and the malformed frame that stopped it.
    func read(_ chunks: [String], max: Int = 64 * 1024) -> (events: [String], malformed: SyslogFrameError.Kind?) {
        var reader = SyslogStreamReader(maxMessageSize: max, parser: SyslogParser(utcOffset: { _ in 0 }))
        var malformed: SyslogFrameError.Kind?
        for chunk in chunks where malformed == nil {
            malformed = reader.read(ByteBuffer(string: chunk), sourceIP: nil, now: 1_700_000_000_000) { _ in }
        }
        if malformed == nil { malformed = reader.finish(sourceIP: nil, now: 1_700_000_000_000) { _ in } }
        var events: [String] = []
        reader.pending.forEach { event, _ in events.append(String(decoding: event, as: UTF8.self)) }
        return (events, malformed)
    }

    @Test func theReaderMakesTheSameEventsWhateverTheReadBoundaries() throws {
        let stream = "<13>one\n11 <13>counted\n\n42 is the answer\r\n5 <13>x<14>last"
        let whole = read([stream])
        #expect(whole.malformed == nil)
        #expect(whole.events.count == 5)
        #expect(whole.events.first?.contains("\"message\":\"one\"") == true)
        #expect(whole.events[2].contains("\"message\":\"42 is the answer\"") == true)
        #expect(whole.events.last?.contains("\"message\":\"last\"") == true)
        let bytes = Array(stream.utf8)
        for cut in 1..<bytes.count {
            for cut2 in stride(from: cut, to: bytes.count, by: 7) {
                let chunks = [bytes[..<cut], bytes[cut..<cut2], bytes[cut2...]].map { String(decoding: $0, as: UTF8.self) }
                #expect(read(chunks).events == whole.events, "cut at \(cut), \(cut2)")
            }
        }
    }

    /// A line longer than one read, arriving a byte at a time, is held until its end and made one event.
    @Test func aLineArrivingInManyReadsIsOneEvent() {
        let text = String(repeating: "abcdefgh", count: 100)
        let chunks = Array("<13>\(text)\n<13>next\n").map { String($0) }
        let out = read(chunks)
        #expect(out.malformed == nil)
        #expect(out.events.count == 2)
        #expect(out.events.first?.contains(text) == true)
    }

    @Test func theReaderStopsAtAMalformedFrameAfterTheGoodOnes() {
        let out = read(["<13>good\n", "0 <13>bad\n<13>never\n"])
        #expect(out.events.count == 1)
        #expect(out.events.first?.contains("good") == true)
        #expect(out.malformed == .invalidOctetCount)
        // The stream ends inside an octet-counted frame: what came before is kept, the cut frame is refused.
        let cut = read(["<13>good\n20 <13>cut"])
        #expect(cut.events.count == 1)
        #expect(cut.malformed == .truncated)
    }
}
