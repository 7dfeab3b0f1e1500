@testable import FerrySyslog
import FerryWire
import Testing

/// The parser against the RFCs' examples (RFC 5424 §6.5, RFC 3164 §5.4), the real outputs of util-linux
/// `logger`, appliance formats and the edge cases users hit. Every output is also checked to be valid JSON.
@Suite struct SyslogParserTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let input: [UInt8]
        let json: String
        let format: SyslogParseResult.Format
        var failure: SyslogParseFailure?
        /// Milliseconds since the epoch at which the message is read (for the RFC 3164 year).
        var now: Int64 = june2026

        init(_ name: String, _ input: String, _ json: String, _ format: SyslogParseResult.Format,
             failure: SyslogParseFailure? = nil, now: Int64 = june2026) {
            self.init(name, Array(input.utf8), json, format, failure: failure, now: now)
        }

        init(_ name: String, _ input: [UInt8], _ json: String, _ format: SyslogParseResult.Format,
             failure: SyslogParseFailure? = nil, now: Int64 = june2026) {
            self.name = name
            self.input = input
            self.json = json
            self.format = format
            self.failure = failure
            self.now = now
        }

        var testDescription: String { name }
    }

    /// 2026-06-15T12:00:00Z.
    static let june2026: Int64 = 1_781_524_800_000
    static let bom = "\u{FEFF}"

    static let cases: [Case] = [
        // RFC 5424 §6.5
        Case("RFC 5424 example 1: BOM, no procid", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \(bom)'su root' failed for lonvick on /dev/pts/8",
             #"{"@timestamp":"2003-10-11T22:14:15.003Z","hostname":"mymachine.example.com","appname":"su","msgid":"ID47","facility":"auth","severity":"crit","message":"'su root' failed for lonvick on /dev/pts/8"}"#, .rfc5424),
        Case("RFC 5424 example 2: microseconds and a negative offset", "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
             #"{"@timestamp":"2003-08-24T12:14:15.000003Z","hostname":"192.0.2.1","appname":"myproc","procid":"8710","facility":"local4","severity":"notice","message":"%% It's time to make the do-nuts."}"#, .rfc5424),
        Case("RFC 5424 example 3: structured data", "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \(bom)An application event log entry...",
             #"{"@timestamp":"2003-10-11T22:14:15.003Z","hostname":"mymachine.example.com","appname":"evntslog","msgid":"ID47","facility":"local4","severity":"notice","message":"An application event log entry...","structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"}}}"#, .rfc5424),
        Case("RFC 5424 example 4: two SD elements, no MSG", "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
             #"{"@timestamp":"2003-10-11T22:14:15.003Z","hostname":"mymachine.example.com","appname":"evntslog","msgid":"ID47","facility":"local4","severity":"notice","structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"},"examplePriority@32473":{"class":"high"}}}"#, .rfc5424),

        // RFC 3164 §5.4 (read in a zone at +01:00 on 2026-06-15)
        Case("RFC 3164 example 1", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
             #"{"@timestamp":"2026-10-11T21:14:15.000Z","hostname":"mymachine","appname":"su","facility":"auth","severity":"crit","message":"'su root' failed for lonvick on /dev/pts/8"}"#, .rfc3164),
        Case("RFC 3164 example 2: no PRI at all", "Use the BFG!", #"{"message":"Use the BFG!"}"#, .unparsed, failure: .missingPriority),
        Case("RFC 3164 example 3: a hostname and no tag", "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
             #"{"@timestamp":"2026-02-05T16:32:18.000Z","hostname":"10.0.0.99","facility":"user","severity":"notice","message":"Use the BFG!"}"#, .rfc3164),
        Case("RFC 3164 example 4: no valid TIMESTAMP, so all of it is MSG", "<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!",
             #"{"facility":"kern","severity":"emerg","message":"1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"}"#, .rfc3164),

        // util-linux logger (TOOLCHAIN.md "Real clients")
        Case("logger --rfc5424 --msgid", "<156>1 2026-12-02T11:46:05.888665+00:00 vm myapp - M1 [timeQuality tzKnown=\"1\" isSynced=\"0\"] text",
             #"{"@timestamp":"2026-12-02T11:46:05.888665Z","hostname":"vm","appname":"myapp","msgid":"M1","facility":"local3","severity":"warning","message":"text","structured_data":{"timeQuality":{"tzKnown":"1","isSynced":"0"}}}"#, .rfc5424),
        Case("logger --sd-id --sd-param", "<13>1 2026-12-02T11:46:05.888665+01:00 vm root - - [timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"46500\"][custom@32473 user=\"ann\" action=\"login\"] hello",
             #"{"@timestamp":"2026-12-02T10:46:05.888665Z","hostname":"vm","appname":"root","facility":"user","severity":"notice","message":"hello","structured_data":{"timeQuality":{"tzKnown":"1","isSynced":"1","syncAccuracy":"46500"},"custom@32473":{"user":"ann","action":"login"}}}"#, .rfc5424),
        Case("logger --rfc3164 with a space-padded day", "<156>Dec  2 11:46:05 vm myapp: text\n",
             #"{"@timestamp":"2026-12-02T10:46:05.000Z","hostname":"vm","appname":"myapp","facility":"local3","severity":"warning","message":"text"}"#, .rfc3164),
        Case("logger --rfc3164 -i (pid)", "<13>Jun 15 13:59:00 vm myapp[4242]: text",
             #"{"@timestamp":"2026-06-15T12:59:00.000Z","hostname":"vm","appname":"myapp","procid":"4242","facility":"user","severity":"notice","message":"text"}"#, .rfc3164),

        // RFC 3164 as local senders and appliances write it
        Case("no hostname after the time: the word is the tag", "<13>Dec  2 11:46:05 myapp: text",
             #"{"@timestamp":"2026-12-02T10:46:05.000Z","appname":"myapp","facility":"user","severity":"notice","message":"text"}"#, .rfc3164),
        Case("no hostname, tag with pid", "<13>Jun 14 08:00:00 sshd[42]: Accepted publickey",
             #"{"@timestamp":"2026-06-14T07:00:00.000Z","appname":"sshd","procid":"42","facility":"user","severity":"notice","message":"Accepted publickey"}"#, .rfc3164),
        Case("zero-padded and bare days", "<13>Jun 05 08:00:00 h a: x",
             #"{"@timestamp":"2026-06-05T07:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc3164),
        Case("a single-digit day with one space", "<13>Jun 5 08:00:00 h a: x",
             #"{"@timestamp":"2026-06-05T07:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc3164),
        Case("a hostname and text without a tag", "<13>Jun 15 08:00:00 host some text",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","hostname":"host","facility":"user","severity":"notice","message":"some text"}"#, .rfc3164),
        Case("a tag with a path and no space after the colon kept as MSG", "<22>Jun 15 08:00:00 mx postfix/smtpd[991]: connect from x",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","hostname":"mx","appname":"postfix/smtpd","procid":"991","facility":"mail","severity":"info","message":"connect from x"}"#, .rfc3164),
        Case("one space after the tag is dropped, further ones kept", "<13>Jun 15 08:00:00 h a:   indented",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"  indented"}"#, .rfc3164),
        Case("rsyslog's RFC 3339 variant of RFC 3164", "<13>2026-12-02T11:46:05.123456+01:00 host app[1]: msg",
             #"{"@timestamp":"2026-12-02T10:46:05.123456Z","hostname":"host","appname":"app","procid":"1","facility":"user","severity":"notice","message":"msg"}"#, .rfc3164),
        Case("Cisco IOS: sequence number, unsynced mark, milliseconds, mnemonic", "<189>123: *Mar  1 00:01:02.123: %SYS-5-CONFIG_I: Configured from console by vty0",
             #"{"@timestamp":"2026-02-28T23:01:02.123Z","facility":"local7","severity":"notice","message":"%SYS-5-CONFIG_I: Configured from console by vty0"}"#, .rfc3164),
        Case("Cisco ASA: year in the time, colon after it", "<166>Dec 02 2026 11:46:05: %ASA-6-302013: Built outbound TCP connection",
             #"{"@timestamp":"2026-12-02T10:46:05.000Z","facility":"local4","severity":"info","message":"%ASA-6-302013: Built outbound TCP connection"}"#, .rfc3164),
        Case("Cisco ASA with its device id", "<166>Dec 02 2026 11:46:05 asa1 : %ASA-6-302013: Built",
             #"{"@timestamp":"2026-12-02T10:46:05.000Z","hostname":"asa1","facility":"local4","severity":"info","message":"%ASA-6-302013: Built"}"#, .rfc3164),
        Case("key=value appliances (FortiGate) without a header time", "<189>date=2026-12-02 time=11:46:05 devname=\"fw1\" type=\"traffic\"",
             #"{"facility":"local7","severity":"notice","message":"date=2026-12-02 time=11:46:05 devname=\"fw1\" type=\"traffic\""}"#, .rfc3164),
        Case("a PRI and nothing else", "<13>", #"{"facility":"user","severity":"notice"}"#, .rfc3164),
        Case("a PRI then text without a time", "<14>42 is the answer",
             #"{"facility":"user","severity":"info","message":"42 is the answer"}"#, .rfc3164),
        Case("'1 ' without a time after it is not RFC 5424", "<14>1 thing happened",
             #"{"facility":"user","severity":"info","message":"1 thing happened"}"#, .rfc3164),
        Case("a BOM in an RFC 3164 MSG", "<13>Jun 15 08:00:00 h a: \(bom)text",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"text"}"#, .rfc3164),
        Case("a time glued to text is not a time", "<13>Jun 15 08:00:00x y",
             #"{"facility":"user","severity":"notice","message":"Jun 15 08:00:00x y"}"#, .rfc3164),
        Case("uppercase month", "<13>JUN 15 08:00:00 h a: x",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc3164),
        Case("a non-ASCII word after the time is MSG, not a hostname", "<13>Jun 15 08:00:00 Grüße aus Köln",
             #"{"@timestamp":"2026-06-15T07:00:00.000Z","facility":"user","severity":"notice","message":"Grüße aus Köln"}"#, .rfc3164),

        // RFC 5424 edge cases
        Case("escaped quote, backslash and bracket in SD values; other backslashes kept", #"<13>1 - h a - - [x@1 q="a\"b" s="c\\d" b="e\]f" o="g\h"] m"#,
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"m","structured_data":{"x@1":{"q":"a\"b","s":"c\\d","b":"e]f","o":"g\\h"}}}"#, .rfc5424),
        Case("a [ inside MSG after NILVALUE SD", "<13>1 2026-06-15T12:00:00Z h a - - - [not sd] text [x]",
             #"{"@timestamp":"2026-06-15T12:00:00.000Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"[not sd] text [x]"}"#, .rfc5424),
        Case("a [ inside MSG after SD", #"<13>1 - h a - - [a b="c"] [x] y"#,
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"[x] y","structured_data":{"a":{"b":"c"}}}"#, .rfc5424),
        Case("an unescaped ] inside an SD value", #"<13>1 - h a - - [a b="x]y"] m"#,
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"m","structured_data":{"a":{"b":"x]y"}}}"#, .rfc5424),
        Case("a repeated parameter becomes an array; a repeated SD-ID is merged", #"<13>1 - h a - - [origin ip="192.0.2.1" ip="192.0.2.2"][a x="1"][a y="2" x="3"]"#,
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","structured_data":{"origin":{"ip":["192.0.2.1","192.0.2.2"]},"a":{"x":["1","3"],"y":"2"}}}"#, .rfc5424),
        Case("an SD element without parameters", "<13>1 - h a - - [marker] m",
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"m","structured_data":{"marker":{}}}"#, .rfc5424),
        Case("all NILVALUEs", "<13>1 - - - - - -", #"{"facility":"user","severity":"notice"}"#, .rfc5424),
        Case("MSG right after MSGID (no SD) is read as MSG", "<13>1 2026-06-15T12:00:00Z host app 1 ID hello world",
             #"{"@timestamp":"2026-06-15T12:00:00.000Z","hostname":"host","appname":"app","procid":"1","msgid":"ID","facility":"user","severity":"notice","message":"hello world"}"#, .rfc5424),
        Case("header ends after MSGID", "<13>1 2026-06-15T12:00:00Z host app 1 ID",
             #"{"@timestamp":"2026-06-15T12:00:00.000Z","hostname":"host","appname":"app","procid":"1","msgid":"ID","facility":"user","severity":"notice"}"#, .rfc5424),
        Case("lowercase t and z, offset without colon, fraction of one digit", "<13>1 2026-06-15t12:00:00.5+0200 h a - - - x",
             #"{"@timestamp":"2026-06-15T10:00:00.500Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc5424),
        Case("nanoseconds kept", "<13>1 2026-06-15T12:00:00.123456789Z h a - - - x",
             #"{"@timestamp":"2026-06-15T12:00:00.123456789Z","hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc5424),
        Case("control characters and quotes in MSG are escaped", "<13>1 - h a - - - tab\there \"quoted\" back\\slash",
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"tab\there \"quoted\" back\\slash"}"#, .rfc5424),
        Case("trailing CR, LF and NUL are not part of the message", "<13>1 - h a - - - x\r\n\u{0}",
             #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x"}"#, .rfc5424),

        // Neither RFC: stored as raw text, counted by kind
        Case("a line without PRI that starts with a number", "42 is the answer", #"{"message":"42 is the answer"}"#, .unparsed, failure: .missingPriority),
        Case("PRI above 191", "<192>Jun 15 08:00:00 h a: x", #"{"message":"<192>Jun 15 08:00:00 h a: x"}"#, .unparsed, failure: .invalidPriority),
        Case("PRI of four digits", "<0013>x", #"{"message":"<0013>x"}"#, .unparsed, failure: .invalidPriority),
        Case("empty PRI", "<>x", #"{"message":"<>x"}"#, .unparsed, failure: .invalidPriority),
        Case("PRI not closed", "<13 x", #"{"message":"<13 x"}"#, .unparsed, failure: .invalidPriority),
        Case("an RFC 5424 time that does not exist", "<13>1 2026-02-30T12:00:00Z h a - - - x",
             #"{"message":"<13>1 2026-02-30T12:00:00Z h a - - - x"}"#, .unparsed, failure: .rfc5424Timestamp),
        Case("an RFC 5424 time without zone", "<13>1 2026-06-15T12:00:00 h a - - - x",
             #"{"message":"<13>1 2026-06-15T12:00:00 h a - - - x"}"#, .unparsed, failure: .rfc5424Timestamp),
        Case("an RFC 5424 header cut short", "<13>1 2026-06-15T12:00:00Z host", #"{"message":"<13>1 2026-06-15T12:00:00Z host"}"#, .unparsed, failure: .rfc5424Header),
        Case("an unterminated SD element", #"<13>1 - h a - - [x a="1" m"#, #"{"message":"<13>1 - h a - - [x a=\"1\" m"}"#, .unparsed, failure: .rfc5424StructuredData),
        Case("an SD parameter without a value", "<13>1 - h a - - [x a] m", #"{"message":"<13>1 - h a - - [x a] m"}"#, .unparsed, failure: .rfc5424StructuredData),
    ]

    @Test(arguments: cases)
    func parsesIntoTheExpectedEvent(_ testCase: Case) throws {
        var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(3600))
        var out: [UInt8] = []
        let result = try #require(testCase.input.withUnsafeBytes { parser.parse($0, sourceIP: nil, now: testCase.now, into: &out) })
        #expect(String(decoding: out, as: UTF8.self) == testCase.json)
        #expect(result.format == testCase.format)
        #expect(result.failure == testCase.failure)
        #expect(result.hasTimestamp == testCase.json.contains("@timestamp"))
        #expect(!result.replacedInvalidUTF8)
        try out.withUnsafeBytes { try JSONValidator.validateObject($0) }
    }

    @Test func sourceIPIsAddedToParsedAndUnparsedMessages() {
        var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(0))
        var out: [UInt8] = []
        for message in ["<13>1 - h a - - - x", "no pri"] {
            _ = Array(message.utf8).withUnsafeBytes { parser.parse($0, sourceIP: Array("2001:db8::1".utf8), now: 0, into: &out) }
        }
        #expect(String(decoding: out, as: UTF8.self)
            == #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"x","source_ip":"2001:db8::1"}"#
            + #"{"message":"no pri","source_ip":"2001:db8::1"}"#)
    }

    @Test func invalidUTF8IsReplacedAndReported() throws {
        var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(0))
        var out: [UInt8] = []
        let input = Array("<13>1 - h a - - - bad ".utf8) + [0xFF, 0xC3] + Array(" end".utf8)
        let result = try #require(input.withUnsafeBytes { parser.parse($0, sourceIP: nil, now: 0, into: &out) })
        #expect(result.replacedInvalidUTF8)
        #expect(result.format == .rfc5424)
        #expect(String(decoding: out, as: UTF8.self) == #"{"hostname":"h","appname":"a","facility":"user","severity":"notice","message":"bad \#u{FFFD}\#u{FFFD} end"}"#)
        try out.withUnsafeBytes { try JSONValidator.validateObject($0) }
    }

    @Test func emptyMessagesYieldNothing() {
        var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(0))
        var out: [UInt8] = []
        for input in ["", "\n", "\r\n", "\u{0}"] {
            #expect(Array(input.utf8).withUnsafeBytes { parser.parse($0, sourceIP: nil, now: 0, into: &out) } == nil)
        }
        #expect(out.isEmpty)
    }

    // MARK: The RFC 3164 year and zone

    func bsdTime(_ message: String, now: Int64, offset: @escaping SyslogParser.UTCOffset) -> String? {
        var parser = SyslogParser(utcOffset: offset)
        var out: [UInt8] = []
        _ = Array(message.utf8).withUnsafeBytes { parser.parse($0, sourceIP: nil, now: now, into: &out) }
        let text = String(decoding: out, as: UTF8.self)
        guard let range = text.range(of: #""@timestamp":""#) else { return nil }
        return String(text[range.upperBound...].prefix(24))
    }

    @Test func theYearIsTheOneClosestToNow() {
        let plusOne = SyslogParser.fixedUTCOffset(3600)
        // Read at 2027-01-01T00:00:30 local (23:00:30Z): a message from a minute ago was last year.
        #expect(bsdTime("<13>Dec 31 23:59:30 h a: x", now: 1_798_758_030_000, offset: plusOne) == "2026-12-31T22:59:30.000Z")
        // Read at 2026-12-31T23:00:00 local: a sender whose clock is a bit ahead is next year.
        #expect(bsdTime("<13>Jan  1 00:00:05 h a: x", now: 1_798_754_400_000, offset: plusOne) == "2026-12-31T23:00:05.000Z")
        // Read on 2026-06-15: December 2nd is this year's (170 days ahead, not 195 back); December 20th last
        // year's (177 days back, not 188 ahead).
        #expect(bsdTime("<13>Dec  2 11:46:05 h a: x", now: Self.june2026, offset: plusOne) == "2026-12-02T10:46:05.000Z")
        #expect(bsdTime("<13>Dec 20 11:46:05 h a: x", now: Self.june2026, offset: plusOne) == "2025-12-20T10:46:05.000Z")
        // February 29th exists only in leap years: read in 2028, it is 2028's.
        #expect(bsdTime("<13>Feb 29 12:00:00 h a: x", now: 1_835_438_400_000, offset: plusOne) == "2028-02-29T11:00:00.000Z")
        // ...and read in 2026 no year near has it: not a time, so the whole rest is the message.
        #expect(bsdTime("<13>Feb 29 12:00:00 h a: x", now: Self.june2026, offset: plusOne) == nil)
    }

    /// A zone with daylight saving time, as rules: UTC+1, and UTC+2 from the last Sunday of March 01:00 UTC to
    /// the last Sunday of October 01:00 UTC (central Europe), for 2026 only.
    static let centralEurope: SyslogParser.UTCOffset = { utc in
        let summerStarts: Int64 = 1_774_746_000  // 2026-03-29T01:00:00Z
        let summerEnds: Int64 = 1_792_890_000  // 2026-10-25T01:00:00Z
        return utc >= summerStarts && utc < summerEnds ? 7200 : 3600
    }

    @Test func theZoneIsTheCollectorsIncludingDaylightSavingTime() {
        #expect(bsdTime("<13>Jan 15 12:00:00 h a: x", now: Self.june2026, offset: Self.centralEurope) == "2026-01-15T11:00:00.000Z")
        #expect(bsdTime("<13>Jul 15 12:00:00 h a: x", now: Self.june2026, offset: Self.centralEurope) == "2026-07-15T10:00:00.000Z")
        // The hour before and after the switch in spring (02:00 local becomes 03:00).
        #expect(bsdTime("<13>Mar 29 01:59:59 h a: x", now: Self.june2026, offset: Self.centralEurope) == "2026-03-29T00:59:59.000Z")
        #expect(bsdTime("<13>Mar 29 03:00:00 h a: x", now: Self.june2026, offset: Self.centralEurope) == "2026-03-29T01:00:00.000Z")
        // RFC 5424 and RFC 3339 times carry their own offset: the collector's zone does not matter.
        #expect(bsdTime("<13>1 2026-01-15T12:00:00+05:30 h a - - - x", now: Self.june2026, offset: Self.centralEurope) == "2026-01-15T06:30:00.000Z")
    }

    @Test func theLocalZoneComesFromTheCLibrary() {
        // Whatever this machine's zone is, the offset is a whole number of quarter hours within ±14 h.
        let offset = SyslogParser.localUTCOffset(1_781_524_800)
        #expect(abs(offset) <= 14 * 3600 && offset % 900 == 0)
    }

    // MARK: Robustness

    @Test func anyInputGivesOneValidJSONObject() throws {
        var generator = SystemRandomNumberGenerator()
        var parser = SyslogParser(utcOffset: SyslogParser.fixedUTCOffset(0))
        let seeds = Self.cases.map(\.input)
        let alphabet = Array("<>[]=\"\\ -:0123456789TZ.+abcDecJun@%*\u{1}\t\n".utf8) + [0xC3, 0xA9, 0xFF, 0xEF, 0xBB, 0xBF]
        for round in 0..<20_000 {
            var input = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0...input.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0 where position < input.count: input.remove(at: position)
                case 1: input.insert(alphabet.randomElement(using: &generator)!, at: position)
                default: input = Array(input.prefix(position))
                }
            }
            var out: [UInt8] = []
            let result = input.withUnsafeBytes { parser.parse($0, sourceIP: [0x31], now: Self.june2026, into: &out) }
            guard result != nil else { continue }
            do {
                try out.withUnsafeBytes { try JSONValidator.validateObject($0) }
            } catch {
                Issue.record("invalid JSON \(String(decoding: out, as: UTF8.self)) for input \(input)")
                return
            }
        }
    }
}
