#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SyslogParser {
    /// The collector's zone (`TZ`, else `/etc/localtime`) through the C library's `localtime_r`: what RFC 3164
    /// times, which carry no zone, are read in.
    package static let localUTCOffset: UTCOffset = { utcSeconds in
        var time = time_t(utcSeconds)
        var parts = tm()
        guard localtime_r(&time, &parts) != nil else { return 0 }
        return Int(parts.tm_gmtoff)
    }

    /// A zone at a fixed offset from UTC (seconds east): for tests, and for collectors told to read RFC 3164
    /// times as UTC.
    package static func fixedUTCOffset(_ seconds: Int) -> UTCOffset {
        { _ in seconds }
    }
}
