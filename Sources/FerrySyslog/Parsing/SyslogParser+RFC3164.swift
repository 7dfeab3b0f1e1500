/// RFC 3164 as senders actually write it: `<PRI>TIMESTAMP SP [HOSTNAME SP] TAG[PID]: MSG`.
///
/// Reading, in order, after the PRI:
/// 1. A time: BSD (`Dec  2 11:46:05`, variants in `parseBSDTime`) or RFC 3339 (rsyslog's forward format),
///    optionally after a Cisco sequence number (`123: `) and a Cisco sync mark (`*` or `.`), optionally
///    followed by a colon (Cisco, ASA). Without a recognisable time the whole rest is MSG, as RFC 3164
///    §4.3.2 tells a relay to do; no hostname or tag is guessed from it.
/// 2. The next word is the TAG when it ends with `:` or holds `[` (`myapp:`, `sshd[42]:`): then the message
///    has no HOSTNAME, as local senders write it (`<13>Dec  2 11:46:05 myapp: text`). A word starting with
///    `%` is a Cisco mnemonic (`%SYS-5-CONFIG_I:`) and starts MSG. Otherwise the word is the HOSTNAME when it
///    is printable ASCII, and the TAG is looked for in the word after it (a lone `:` there, as Cisco ASA
///    writes after its device id, is skipped).
/// 3. TAG: `appname`, `[procid]` optional, `:` (which may be missing after `]`); one space after it is
///    skipped; the rest is MSG. A word that is not a TAG starts MSG.
extension SyslogParser {
    mutating func parseRFC3164(_ bytes: UnsafeRawBufferPointer, from start: Int, now: Int64, into parsed: inout ParsedMessage) {
        let end = bytes.count
        guard let (time, afterTime) = parseHeaderTime(bytes, at: start, now: now) else {
            parsed.message = Self.messageRange(bytes, from: start)
            return
        }
        parsed.time = time
        var index = afterTime
        if index < end, bytes[index] == UInt8(ascii: ":") { index += 1 }
        Self.skipSpaces(bytes, &index)
        guard index < end else { return }

        var word = Self.word(bytes, at: index)
        if bytes[index] == UInt8(ascii: "%") {
            parsed.message = Self.messageRange(bytes, from: index)
            return
        }
        if !Self.looksLikeTag(bytes, word) {
            guard Self.isHostname(bytes, word) else {
                parsed.message = Self.messageRange(bytes, from: index)
                return
            }
            parsed.hostname = word
            index = word.upperBound
            Self.skipSpaces(bytes, &index)
            if index + 1 < end, bytes[index] == UInt8(ascii: ":"), bytes[index + 1] == UInt8(ascii: " ") {
                index += 2
                Self.skipSpaces(bytes, &index)
            }
            guard index < end else { return }
            word = Self.word(bytes, at: index)
            if bytes[index] == UInt8(ascii: "%") || !Self.looksLikeTag(bytes, word) {
                parsed.message = Self.messageRange(bytes, from: index)
                return
            }
        }
        guard let afterTag = parseTag(bytes, word, into: &parsed) else {
            parsed.message = Self.messageRange(bytes, from: index)
            return
        }
        index = afterTag
        if index < end, bytes[index] == UInt8(ascii: " ") { index += 1 }
        parsed.message = Self.messageRange(bytes, from: index)
    }

    /// The header time at `start` with the Cisco prefixes, and the index after it.
    private mutating func parseHeaderTime(_ bytes: UnsafeRawBufferPointer, at start: Int, now: Int64) -> (SyslogTime, Int)? {
        var probe = start
        if Self.number(bytes, &probe, minDigits: 1, maxDigits: 10) != nil, Self.expect(bytes, &probe, ":"),
           Self.expect(bytes, &probe, " "), let found = parseTime(bytes, at: probe, now: now) {
            return found
        }
        return parseTime(bytes, at: start, now: now)
    }

    private mutating func parseTime(_ bytes: UnsafeRawBufferPointer, at start: Int, now: Int64) -> (SyslogTime, Int)? {
        var index = start
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "*") || bytes[index] == UInt8(ascii: ".") { index += 1 }
        guard index < bytes.count else { return nil }
        if digitValue(bytes[index]) != nil {
            guard let (time, after) = Self.parseRFC3339(bytes, at: index),
                  after == bytes.count || bytes[after] == UInt8(ascii: " ") else { return nil }
            return (time, after)
        }
        return parseBSDTime(bytes, at: index, now: now)
    }

    /// `appname[procid]:` in `word`; the index after the TAG, or nil when the word is not one.
    private func parseTag(_ bytes: UnsafeRawBufferPointer, _ word: Range<Int>, into parsed: inout ParsedMessage) -> Int? {
        var index = word.lowerBound
        while index < word.upperBound, bytes[index] != UInt8(ascii: "[") { index += 1 }
        if index < word.upperBound {
            let name = word.lowerBound..<index
            index += 1
            let pidStart = index
            while index < word.upperBound, bytes[index] != UInt8(ascii: "]") { index += 1 }
            guard !name.isEmpty, index < word.upperBound, index > pidStart else { return nil }
            let pid = pidStart..<index
            index += 1
            guard index == word.upperBound || (index + 1 == word.upperBound && bytes[index] == UInt8(ascii: ":")) else { return nil }
            parsed.appname = name
            parsed.procid = pid
            return word.upperBound
        }
        let name = word.lowerBound..<(word.upperBound - 1)  // looksLikeTag: the word ends with ":"
        guard !name.isEmpty else { return nil }
        parsed.appname = name
        return word.upperBound
    }

    private static func looksLikeTag(_ bytes: UnsafeRawBufferPointer, _ word: Range<Int>) -> Bool {
        if bytes[word.upperBound - 1] == UInt8(ascii: ":") { return true }
        for index in word where bytes[index] == UInt8(ascii: "[") { return true }
        return false
    }

    private static func isHostname(_ bytes: UnsafeRawBufferPointer, _ word: Range<Int>) -> Bool {
        for index in word where bytes[index] <= 0x20 || bytes[index] >= 0x7F { return false }
        return true
    }

    /// The run of non-space bytes at `start` (not empty: the caller is on a non-space byte).
    private static func word(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Range<Int> {
        var index = start
        while index < bytes.count, bytes[index] != UInt8(ascii: " ") { index += 1 }
        return start..<index
    }

    private static func skipSpaces(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) {
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") { index += 1 }
    }
}
