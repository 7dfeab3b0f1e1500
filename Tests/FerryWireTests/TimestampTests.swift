import FerryWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct TimestampTests {
    /// The C library's `gmtime_r` + `strftime` as the reference, with the milliseconds appended.
    func reference(_ milliseconds: Int64) -> String {
        let floor = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        var seconds = time_t(floor)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let base = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let millis = Int(milliseconds - floor * 1000)
        return base + "." + String(repeating: "0", count: 3 - String(millis).count) + String(millis) + "Z"
    }

    @Test func agreesWithTheCLibraryAcrossCenturiesAndLeapDays() {
        var rng = SystemRandomNumberGenerator()
        let fixed: [Int64] = [0, 1, 999, 1000, -1, -1000, -1001, 951_782_400_000, 4_107_542_399_999, 1_764_678_896_789,
                              68_169_600_000, 4_102_444_800_000, 253_402_300_799_999]
        for ms in fixed + (0..<2000).map({ _ in Int64.random(in: -2_208_988_800_000...253_402_300_799_999, using: &rng) }) {
            #expect(Timestamp.rfc3339(milliseconds: ms) == reference(ms), "at \(ms) ms")
        }
    }

    @Test func epochSecondsInvertsTheFormatting() {
        #expect(Timestamp.epochSeconds(year: 2026, month: 12, day: 2, hour: 11, minute: 46, second: 5) == 1_796_211_965)
        #expect(Timestamp.epochSeconds(year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0) == 951_782_400)
        #expect(Timestamp.epochSeconds(year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59) == -1)
        #expect(Timestamp.rfc3339(milliseconds: 1_796_211_965_000) == "2026-12-02T11:46:05.000Z")
    }

    @Test func writesMicrosecondsWhenAsked() {
        var out: [UInt8] = []
        Timestamp.appendRFC3339(seconds: 1_796_211_965, fraction: 888_665, digits: 6, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "2026-12-02T11:46:05.888665Z")
    }

    @Test func namesEverySyslogSeverityAndFacility() {
        #expect(SyslogNames.severity(4) == "warning")
        #expect(SyslogNames.facility(19) == "local3")
        #expect(SyslogNames.severity(8) == nil)
        #expect(SyslogNames.facility(24) == nil)
        #expect(SyslogNames.facilities.count == 24)
    }
}
