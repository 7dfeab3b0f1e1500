/// RFC 3339 timestamps in UTC, written without Foundation: the `@timestamp` every input stamps on events,
/// the times of syslog messages and journal entries, and the times tools print.
///
/// Proleptic Gregorian calendar, the same as `timegm`/`gmtime`; years 0000–9999 (times outside are
/// clamped to that range, so the text is always 24 or more bytes of the same shape).
public enum Timestamp {
    /// `2026-12-02T12:34:56.789Z` for `milliseconds` since the Unix epoch (24 bytes).
    public static func rfc3339(milliseconds: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendRFC3339(milliseconds: milliseconds, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the 24 bytes of `rfc3339(milliseconds:)` to `out`.
    public static func appendRFC3339(milliseconds: Int64, to out: inout [UInt8]) {
        let floor = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        appendRFC3339(seconds: floor, fraction: Int(milliseconds - floor * 1000), digits: 3, to: &out)
    }

    /// Appends `seconds` since the epoch plus a fraction of `digits` digits (0 writes none; `fraction` must be
    /// below 10^digits): `2026-12-02T12:34:56.789123Z` with `digits` 6.
    public static func appendRFC3339(seconds: Int64, fraction: Int, digits: Int, to out: inout [UInt8]) {
        let clamped = min(max(seconds, minSeconds), maxSeconds)
        let days = clamped >= 0 ? clamped / 86_400 : (clamped - 86_399) / 86_400
        let secondOfDay = Int(clamped - days * 86_400)
        let (year, month, day) = civil(fromDays: days)
        put(year, 4, &out)
        out.append(UInt8(ascii: "-"))
        put(month, 2, &out)
        out.append(UInt8(ascii: "-"))
        put(day, 2, &out)
        out.append(UInt8(ascii: "T"))
        put(secondOfDay / 3600, 2, &out)
        out.append(UInt8(ascii: ":"))
        put(secondOfDay / 60 % 60, 2, &out)
        out.append(UInt8(ascii: ":"))
        put(secondOfDay % 60, 2, &out)
        if digits > 0 {
            out.append(UInt8(ascii: "."))
            put(clamped == seconds ? fraction : 0, digits, &out)
        }
        out.append(UInt8(ascii: "Z"))
    }

    /// Seconds since the epoch of a civil UTC date and time (`timegm` without the C library's state).
    /// Months 1–12, days 1–31; out-of-range fields are not normalised: callers validate them.
    public static func epochSeconds(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64 {
        days(fromCivil: year, month, day) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    package static func civil(fromDays count: Int64) -> (year: Int, month: Int, day: Int) {
        let z = count + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static let minSeconds: Int64 = -62_167_219_200  // 0000-01-01T00:00:00Z
    private static let maxSeconds: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z

    @inline(__always)
    private static func put(_ value: Int, _ width: Int, _ out: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
            rest %= divisor
            divisor /= 10
        }
    }
}
