import FerryWire

/// The times of syslog headers: RFC 3339 (RFC 5424, and rsyslog's high-precision RFC 3164 variant) and the
/// BSD `Mmm dd hh:mm:ss` of RFC 3164 with the variants appliances send.
extension SyslogParser {
    /// `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)` at `start`: the time and the index after it. Lenient in two ways
    /// that real senders need: a lowercase `t`/`z`, and an offset without its colon (`+0100`). Fractions
    /// longer than 9 digits are cut to 9.
    static func parseRFC3339(_ bytes: UnsafeRawBufferPointer, at start: Int) -> (SyslogTime, Int)? {
        var index = start
        guard let year = number(bytes, &index, digits: 4), expect(bytes, &index, "-"),
              let month = number(bytes, &index, digits: 2), expect(bytes, &index, "-"),
              let day = number(bytes, &index, digits: 2), index < bytes.count,
              bytes[index] == UInt8(ascii: "T") || bytes[index] == UInt8(ascii: "t") else { return nil }
        index += 1
        guard let hour = number(bytes, &index, digits: 2), expect(bytes, &index, ":"),
              let minute = number(bytes, &index, digits: 2), expect(bytes, &index, ":"),
              let second = number(bytes, &index, digits: 2),
              validDate(year: year, month: month, day: day), hour <= 23, minute <= 59, second <= 60 else { return nil }
        let (fraction, digits) = parseFraction(bytes, &index)
        guard index < bytes.count else { return nil }
        var offsetSeconds = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = number(bytes, &index, digits: 2) else { return nil }
            _ = expect(bytes, &index, ":")
            guard let minutes = number(bytes, &index, digits: 2), hours <= 23, minutes <= 59 else { return nil }
            offsetSeconds = sign * (hours * 3600 + minutes * 60)
        default:
            return nil
        }
        let local = Timestamp.epochSeconds(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        return (SyslogTime(seconds: local - Int64(offsetSeconds), fraction: fraction, digits: digits), index)
    }

    /// A BSD time at `start`: `Mmm dd hh:mm:ss` with the day space-padded, zero-padded or bare, and the
    /// appliance variants `Mmm dd yyyy hh:mm:ss` (Cisco with `year`, Cisco ASA) and a fraction
    /// (`.123`, Cisco `msec`). Without a year, the year is the one that puts the time closest to `now`; the
    /// zone is the collector's.
    mutating func parseBSDTime(_ bytes: UnsafeRawBufferPointer, at start: Int, now: Int64) -> (SyslogTime, Int)? {
        var index = start
        guard index + 3 <= bytes.count, let month = Self.monthNumber(bytes[index], bytes[index + 1], bytes[index + 2]) else { return nil }
        index += 3
        guard Self.expect(bytes, &index, " ") else { return nil }
        if index < bytes.count, bytes[index] == UInt8(ascii: " ") { index += 1 }
        guard let day = Self.number(bytes, &index, minDigits: 1, maxDigits: 2), day >= 1, Self.expect(bytes, &index, " ") else { return nil }
        var year: Int?
        if index + 4 < bytes.count, bytes[index + 4] == UInt8(ascii: " ") {
            var probe = index
            if let value = Self.number(bytes, &probe, digits: 4) {
                year = value
                index = probe + 1
            }
        }
        guard let hour = Self.number(bytes, &index, digits: 2), Self.expect(bytes, &index, ":"),
              let minute = Self.number(bytes, &index, digits: 2), Self.expect(bytes, &index, ":"),
              let second = Self.number(bytes, &index, digits: 2), hour <= 23, minute <= 59, second <= 60 else { return nil }
        let (fraction, digits) = Self.parseFraction(bytes, &index)
        // The time must end here: "Dec  2 11:46:05x" is not a time.
        guard index == bytes.count || bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: ":") else { return nil }
        let clock = hour * 3600 + minute * 60 + second
        let seconds: Int64
        if let year {
            guard Self.validDate(year: year, month: month, day: day) else { return nil }
            seconds = utcSeconds(ofLocal: Timestamp.epochSeconds(year: year, month: month, day: day, hour: 0, minute: 0, second: 0) + Int64(clock))
        } else {
            guard let closest = closestYear(month: month, day: day, clock: clock, now: now) else { return nil }
            seconds = closest
        }
        return (SyslogTime(seconds: seconds, fraction: fraction, digits: digits), index)
    }

    /// Of the previous, the current and the next year (in the collector's zone), the one whose reading of
    /// the time is closest to `now`: "Dec 31 23:59:59" read on January 1st is last year's, "Jan  1
    /// 00:00:01" read on December 31st (a sender whose clock is ahead) is next year's. Years in which the
    /// date does not exist (February 29th) are skipped.
    private mutating func closestYear(month: Int, day: Int, clock: Int, now: Int64) -> Int64? {
        let nowSeconds = now >= 0 ? now / 1000 : (now - 999) / 1000
        let currentYear = Self.year(ofSeconds: nowSeconds + Int64(offset(atUTC: nowSeconds)))
        var best: Int64?
        for year in (currentYear - 1)...(currentYear + 1) where Self.validDate(year: year, month: month, day: day) {
            let local = Timestamp.epochSeconds(year: year, month: month, day: day, hour: 0, minute: 0, second: 0) + Int64(clock)
            let candidate = utcSeconds(ofLocal: local)
            if best == nil || abs(candidate - nowSeconds) < abs(best! - nowSeconds) { best = candidate }
        }
        return best
    }

    /// The civil year of `seconds` since the epoch, with only `Timestamp.epochSeconds` (no C library).
    static func year(ofSeconds seconds: Int64) -> Int {
        var year = 1970 + Int(seconds / 31_556_952)
        while Timestamp.epochSeconds(year: year, month: 1, day: 1, hour: 0, minute: 0, second: 0) > seconds { year -= 1 }
        while Timestamp.epochSeconds(year: year + 1, month: 1, day: 1, hour: 0, minute: 0, second: 0) <= seconds { year += 1 }
        return year
    }

    static func validDate(year: Int, month: Int, day: Int) -> Bool {
        guard (1...12).contains(month), day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return day <= days[month - 1]
    }

    /// 1–12 for an English month abbreviation in any case (`Dec`, `DEC`), else nil.
    static func monthNumber(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> Int? {
        let key = (UInt32(a | 0x20) << 16) | (UInt32(b | 0x20) << 8) | UInt32(c | 0x20)
        switch key {
        case 0x6A_61_6E: return 1  // jan
        case 0x66_65_62: return 2  // feb
        case 0x6D_61_72: return 3  // mar
        case 0x61_70_72: return 4  // apr
        case 0x6D_61_79: return 5  // may
        case 0x6A_75_6E: return 6  // jun
        case 0x6A_75_6C: return 7  // jul
        case 0x61_75_67: return 8  // aug
        case 0x73_65_70: return 9  // sep
        case 0x6F_63_74: return 10  // oct
        case 0x6E_6F_76: return 11  // nov
        case 0x64_65_63: return 12  // dec
        default: return nil
        }
    }

    /// `.digits` at `index` (moved past it): the value of at most 9 digits and how many digits it has;
    /// (0, 0) when there is no fraction.
    static func parseFraction(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> (Int, Int) {
        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "."), digitValue(bytes[index + 1]) != nil else { return (0, 0) }
        index += 1
        var fraction = 0
        var digits = 0
        while index < bytes.count, let digit = digitValue(bytes[index]) {
            if digits < 9 {
                fraction = fraction * 10 + digit
                digits += 1
            }
            index += 1
        }
        return (fraction, digits)
    }

    /// Exactly `digits` decimal digits at `index` (moved past them).
    static func number(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, digits: Int) -> Int? {
        number(bytes, &index, minDigits: digits, maxDigits: digits)
    }

    static func number(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, minDigits: Int, maxDigits: Int) -> Int? {
        var value = 0
        var count = 0
        while count < maxDigits, index + count < bytes.count, let digit = digitValue(bytes[index + count]) {
            value = value * 10 + digit
            count += 1
        }
        guard count >= minDigits else { return nil }
        index += count
        return value
    }

    static func expect(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, _ character: Unicode.Scalar) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }
}
