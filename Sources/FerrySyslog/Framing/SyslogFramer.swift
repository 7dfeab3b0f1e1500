#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Splits a TCP byte stream of syslog messages into frames, deciding the framing per frame (RFC 6587):
///
/// - **Octet counting** when the frame starts with digits, a space and then `<`: `MSG-LEN SP SYSLOG-MSG`, the
///   message being the next MSG-LEN bytes. The count must be 1 to `maxMessageSize` without a leading zero;
///   anything else is a malformed frame.
/// - **Non-transparent framing** otherwise: the message runs to the next LF, or NUL (which some senders
///   use as the trailer); CRs and NULs right before the trailer are dropped. So a line without PRI that
///   starts with a number (`42 is the answer`) is a line, not a count — Vector looks only at the first
///   digit and misreads it. A line longer than `maxMessageSize` is malformed.
///
/// Empty lines yield empty frames, which callers skip: senders that put a LF after octet-counted frames
/// produce them. Pure: no I/O, it only looks at the bytes it is given.
package struct SyslogFramer: Sendable {
    package enum Next: Hashable, Sendable {
        /// A message: its bytes are `message` (offsets into the bytes given); the frame took `consumed` bytes.
        case frame(message: Range<Int>, consumed: Int)
        /// The bytes hold no complete frame yet.
        case needMoreData
        /// The stream cannot be read any further: the connection should be closed.
        case malformed(SyslogFrameError.Kind)
    }

    package let maxMessageSize: Int
    /// Digits of `maxMessageSize`: a longer count is too large (and would overflow).
    private let maxCountDigits: Int
    /// How far the current non-transparent frame has been searched for its trailer, so that a long line
    /// arriving in many reads is scanned once.
    private var searched = 0

    package init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
        var digits = 1
        var rest = maxMessageSize
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        self.maxCountDigits = digits
    }

    /// The next frame at the start of `bytes`. With `atEnd` (the peer closed its side), an unterminated last
    /// line is a frame, and an incomplete octet-counted frame is malformed (`truncated`).
    package mutating func next(in bytes: UnsafeRawBufferPointer, atEnd: Bool = false) -> Next {
        let count = bytes.count
        guard count > 0 else { return .needMoreData }
        if searched == 0 {
            var digits = 0
            while digits < count, bytes[digits] >= UInt8(ascii: "0"), bytes[digits] <= UInt8(ascii: "9") { digits += 1 }
            if digits > 0 {
                if digits == count || (bytes[digits] == UInt8(ascii: " ") && digits + 1 == count) {
                    // Cannot tell the framing yet (unless the peer is gone, or no count can be this long).
                    if !atEnd, digits <= maxCountDigits { return .needMoreData }
                } else if bytes[digits] == UInt8(ascii: " "), bytes[digits + 1] == UInt8(ascii: "<") {
                    return octetCounted(bytes, digits: digits, atEnd: atEnd)
                }
            }
        }
        return line(bytes, atEnd: atEnd)
    }

    private func octetCounted(_ bytes: UnsafeRawBufferPointer, digits: Int, atEnd: Bool) -> Next {
        guard bytes[0] != UInt8(ascii: "0") else { return .malformed(.invalidOctetCount) }
        guard digits <= maxCountDigits else { return .malformed(.tooLarge) }
        var length = 0
        for index in 0..<digits { length = length * 10 + Int(bytes[index] - UInt8(ascii: "0")) }
        guard length <= maxMessageSize else { return .malformed(.tooLarge) }
        let start = digits + 1
        guard bytes.count - start >= length else { return atEnd ? .malformed(.truncated) : .needMoreData }
        return .frame(message: start..<(start + length), consumed: start + length)
    }

    private mutating func line(_ bytes: UnsafeRawBufferPointer, atEnd: Bool) -> Next {
        let count = bytes.count
        let from = min(searched, count)
        let limit = min(count, maxMessageSize + 3)  // the message, a CR, a NUL and the LF
        var trailer: Int?
        if from < limit {
            let start = bytes.baseAddress!
            let length = limit - from
            let lf = memchr(start + from, 0x0A, length).map { start.distance(to: UnsafeRawPointer($0)) }
            let nul = memchr(start + from, 0x00, lf.map { $0 - from } ?? length).map { start.distance(to: UnsafeRawPointer($0)) }
            trailer = nul ?? lf
        }
        guard let trailer else {
            if count > maxMessageSize + 2 { return .malformed(.tooLarge) }
            if atEnd {
                searched = 0
                return .frame(message: 0..<trimmed(bytes, end: count), consumed: count)
            }
            searched = limit
            return .needMoreData
        }
        searched = 0
        let end = trimmed(bytes, end: trailer)
        guard end <= maxMessageSize else { return .malformed(.tooLarge) }
        return .frame(message: 0..<end, consumed: trailer + 1)
    }

    private func trimmed(_ bytes: UnsafeRawBufferPointer, end: Int) -> Int {
        var end = end
        while end > 0, bytes[end - 1] == 0x0D || bytes[end - 1] == 0x00 { end -= 1 }
        return end
    }
}

/// A frame that cannot be read: the server closes that connection (and only that one) and counts it by kind.
package struct SyslogFrameError: Error, Hashable, Sendable, CustomStringConvertible {
    package enum Kind: String, Hashable, Sendable, CaseIterable {
        /// A message (a line, or an octet count) over the maximum message size.
        case tooLarge = "too_large"
        /// An octet count of 0 or with a leading zero.
        case invalidOctetCount = "invalid_octet_count"
        /// The peer closed the connection inside an octet-counted frame.
        case truncated
    }

    package let kind: Kind
    package let maxMessageSize: Int

    package init(_ kind: Kind, maxMessageSize: Int) {
        self.kind = kind
        self.maxMessageSize = maxMessageSize
    }

    package var description: String {
        switch kind {
        case .tooLarge:
            "a syslog message is larger than the limit of \(maxMessageSize) bytes; the connection was closed. Raise max_message_size or have the sender split its messages"
        case .invalidOctetCount:
            "an octet-counted syslog frame has a count of 0 or a leading zero; the connection was closed. Check the sender's framing (RFC 6587)"
        case .truncated:
            "the connection closed inside an octet-counted frame (closed by the sender, or at idle timeout or shutdown); the partial message was not stored"
        }
    }
}
