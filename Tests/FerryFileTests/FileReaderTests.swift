@testable import FerryFile
import FerryWire
import Testing

/// Real log4j/logback-style output of a Java service: stack traces with `Caused by:` and `... N more`.
let javaLog = """
2024-05-14 10:15:01.123 INFO  [main] c.e.shop.Application - Started Application in 4.2 seconds
2024-05-14 10:15:07.456 ERROR [http-nio-8080-exec-3] c.e.shop.OrderController - Order 4711 failed
java.lang.IllegalStateException: Payment declined for order 4711
\tat com.example.shop.payment.PaymentService.charge(PaymentService.java:88)
\tat com.example.shop.OrderController.place(OrderController.java:42)
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
Caused by: java.net.SocketTimeoutException: Read timed out
\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)
\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:1099)
\t... 12 more
2024-05-14 10:15:08.000 WARN  [scheduler-1] c.e.shop.Stock - Stock low for item 17
2024-05-14 10:15:09.789 ERROR [http-nio-8080-exec-5] c.e.shop.OrderController - Unexpected
java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null

\tat com.example.shop.Customer.normalise(Customer.java:19)
2024-05-14 10:15:10.000 INFO  [main] c.e.shop.Application - done

"""

/// Messages of `events` (format text).
func messages(_ events: FileEvents) -> [String] {
    (0..<events.count).map { index in
        let text = String(decoding: events[index].bytes, as: UTF8.self)
        let start = text.firstRange(of: #"{"message":""#)!.upperBound
        let end = text.ranges(of: #"","file":"#).last!.lowerBound
        return String(text[start..<end]).replacingEscapes()
    }
}

extension String {
    func replacingEscapes() -> String {
        var out = ""
        var escaped = false
        for c in self {
            if escaped {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                default: out.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}

@Suite struct FileReaderTests {
    static let javaSettings = ReadingSettings(format: .text, maxLineBytes: 4096,
                                              multiline: (try! StartPattern(#"^\d{4}-\d{2}-\d{2} "#), 5000))

    @Test func javaStackTracesBecomeOneEventEach() {
        var reader = FileReader(settings: FileReaderTests.javaSettings, file: "app.log", position: .start, window: [], now: 0)
        var events = FileEvents()
        Array(javaLog.utf8).withUnsafeBytes { reader.feed($0, now: 0, into: &events) }
        let got = messages(events)
        #expect(got.count == 4)
        #expect(got[1].hasPrefix("2024-05-14 10:15:07.456 ERROR"))
        #expect(got[1].hasSuffix("\t... 12 more"))
        #expect(got[1].split(separator: "\n").count == 9)
        #expect(got[3].contains("is null\n\n\tat com.example.shop.Customer.normalise"))
        // The last event waits for the next start line or the flush timeout; the position is its start.
        let lastStart = Int64(javaLog.utf8.count - "2024-05-14 10:15:10.000 INFO  [main] c.e.shop.Application - done\n".utf8.count)
        #expect(reader.committed == FilePosition(offset: lastStart))
        #expect(reader.flushDeadline == 5000)
        #expect(!reader.flushIfDue(now: 4999, into: &events))
        #expect(reader.flushIfDue(now: 5000, into: &events))
        #expect(messages(events).last == "2024-05-14 10:15:10.000 INFO  [main] c.e.shop.Application - done")
        #expect(reader.committed == FilePosition(offset: Int64(javaLog.utf8.count)))
        #expect(reader.flushDeadline == nil)
    }

    @Test func theFlushTimeoutCountsFromTheLastByteAndTakesThePartialLine() {
        var reader = FileReader(settings: FileReaderTests.javaSettings, file: "f", position: .start, window: [], now: 0)
        var events = FileEvents()
        Array("2024-01-01 a\n\tat x\n\tat y".utf8).withUnsafeBytes { reader.feed($0, now: 1000, into: &events) }
        #expect(events.isEmpty)
        #expect(reader.flushDeadline == 6000)
        #expect(reader.flushIfDue(now: 6000, into: &events))
        #expect(messages(events) == ["2024-01-01 a\n\tat x\n\tat y"])
    }

    @Test func aMultilineEventIsCappedAndCounted() {
        let settings = ReadingSettings(format: .text, maxLineBytes: 20, multiline: (try! StartPattern("^S"), 1000))
        var reader = FileReader(settings: settings, file: "f", position: .start, window: [], now: 0)
        var events = FileEvents()
        Array("S123456789\n c23456789\n d23456789\nS2\n".utf8).withUnsafeBytes { reader.feed($0, now: 0, into: &events) }
        #expect(messages(events) == ["S123456789\n c2345678"])
        #expect(reader.counts.truncatedEvents == 1)
    }

    @Test func theCommittedWindowIsTheBytesBeforeThePosition() {
        var reader = FileReader(settings: ReadingSettings(), file: "f", position: .start, window: [], now: 0)
        var events = FileEvents()
        let text = Array((String(repeating: "0123456789", count: 10) + "\nshort\npart").utf8)
        var window: [UInt8]?
        for chunk in stride(from: 0, to: text.count, by: 7) {
            text[chunk..<min(text.count, chunk + 7)].withUnsafeBytes { reader.feed($0, now: 0, into: &events) }
            window = reader.committedWindow
            let offset = Int(reader.committed.offset)
            #expect(window == Array(text[max(0, offset - 64)..<offset]), "after \(chunk + 7) bytes")
        }
        #expect(reader.tail == Array(text.suffix(64)))
    }

    /// Reads `text` in random chunks, "crashes" after a random commit and restarts from the committed
    /// position, many times: every line comes out exactly once, whatever the chunking and the restart points.
    @Test(arguments: [ReadingSettings(format: .text, maxLineBytes: 24),
                      ReadingSettings(format: .text, maxLineBytes: 4096, multiline: (try! StartPattern("^[0-9]"), 1_000_000))])
    func restartsAtTheCommittedPositionEmitEachEventOnce(settings: ReadingSettings) {
        var generator = SplitMix(seed: 42)
        var text = ""
        for n in 0..<400 {
            let length = Int(generator.next() % 40)
            text += "\(n) " + String(repeating: "x", count: length) + (n % 5 == 0 ? "\n  continued \(n)" : "") + (n % 7 == 0 ? "\r\n" : "\n")
        }
        let bytes = Array(text.utf8)
        func readAll(restarting: Bool) -> [String] {
            var out: [String] = []
            var position = FilePosition.start
            var window: [UInt8] = []
            while true {
                var reader = FileReader(settings: settings, file: "f", position: position, window: window, now: 0)
                var events = FileEvents()
                var offset = Int(position.offset)
                var crashed = false
                while offset < bytes.count {
                    let size = Int(1 + generator.next() % 50)
                    let end = min(bytes.count, offset + size)
                    bytes[offset..<end].withUnsafeBytes { reader.feed($0, now: 0, into: &events) }
                    offset = end
                    // A commit: the events so far are stored with the position.
                    out += messages(events)
                    events.removeAll()
                    position = reader.committed
                    window = reader.committedWindow ?? Array(bytes[max(0, Int(position.offset) - 64)..<Int(position.offset)])
                    if restarting && generator.next() % 10 == 0 { crashed = true; break }
                }
                if !crashed {
                    reader.finish(into: &events)
                    out += messages(events)
                    return out
                }
            }
        }
        let straight = readAll(restarting: false)
        let restarted = readAll(restarting: true)
        #expect(straight.count > 100)
        #expect(restarted == straight)
    }
}

/// A small deterministic generator for reproducible random tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
