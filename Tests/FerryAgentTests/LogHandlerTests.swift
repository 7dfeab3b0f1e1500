@testable import FerryAgent
import FerryWire
import Testing

@Suite struct LogHandlerTests {
    @Test func repeatsBeyondTheBurstAreSuppressedAndCounted() {
        let limiter = RepeatLimiter(burst: 3, window: .seconds(3600))
        let admitted = (0..<10).map { _ in limiter.admit("ferry.output.http\u{0}delivery failed") }
        #expect(admitted.prefix(3).allSatisfy { $0 == 0 })
        #expect(admitted.dropFirst(3).allSatisfy { $0 == nil })
        // Another message is not affected.
        #expect(limiter.admit("ferry.output.http\u{0}other") == 0)
    }

    @Test func theNextWindowReportsHowManyWereSuppressed() {
        let limiter = RepeatLimiter(burst: 1, window: .seconds(10))
        let start = ContinuousClock.now
        #expect(limiter.admit("m", now: start) == 0)
        #expect(limiter.admit("m", now: start + .seconds(1)) == nil)
        #expect(limiter.admit("m", now: start + .seconds(9)) == nil)
        // The first line of the next window says how many were left out.
        #expect(limiter.admit("m", now: start + .seconds(10)) == 2)
        #expect(limiter.admit("m", now: start + .seconds(11)) == nil)
    }

    @Test func logfmtQuotesWhatNeedsIt() {
        #expect(LineLogHandler.logfmt("plain") == "plain")
        #expect(LineLogHandler.logfmt("two words") == "\"two words\"")
        #expect(LineLogHandler.logfmt("a=\"b\"") == "\"a=\\\"b\\\"\"")
        #expect(LineLogHandler.logfmt("") == "\"\"")
        // "\r\n" is one Character; escaped by scalar, a peer's text cannot start a second log line.
        #expect(LineLogHandler.logfmt("a\r\nlevel=error msg=forged") == "\"a\\r\\nlevel=error msg=forged\"")
        #expect(!LineLogHandler.logfmt("x\r\ny\u{2028}").contains("\n"))
        #expect(JSONString.literal("line\nbreak \"q\"") == "\"line\\nbreak \\\"q\\\"\"")
    }
}
