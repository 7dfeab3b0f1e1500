package import NIOCore

/// One RELP frame (rsyslog's Reliable Event Logging Protocol, librelp's `relp.txt`):
/// `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, where TXNR is 1–9 digits, COMMAND 1–32 letters, DATALEN
/// 1–9 digits, and DATA (present only when DATALEN > 0) exactly DATALEN bytes.
package struct RELPFrame: Hashable, Sendable {
    package enum Command: Hashable, Sendable {
        case open
        case syslog
        case close
        /// Anything else (`rsp`, `serverclose` and unknown commands, which a server does not take).
        case other(String)

        init(_ bytes: UnsafeRawBufferPointer) {
            switch bytes.count {
            case 4 where bytes.elementsEqual("open".utf8): self = .open
            case 6 where bytes.elementsEqual("syslog".utf8): self = .syslog
            case 5 where bytes.elementsEqual("close".utf8): self = .close
            default: self = .other(String(decoding: bytes, as: UTF8.self))
            }
        }
    }

    package var txnr: Int
    package var command: Command
    package var data: ByteBuffer

    package init(txnr: Int, command: Command, data: ByteBuffer) {
        self.txnr = txnr
        self.command = command
        self.data = data
    }

    /// The largest transaction number; the next one after it is 1.
    package static let maxTxnr = 999_999_999

    /// Appends a frame to `buffer`: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
    package static func write(txnr: Int, command: String, data: some Collection<UInt8>, to buffer: inout ByteBuffer) {
        buffer.writeString(String(txnr))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(command)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(String(data.count))
        if !data.isEmpty {
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeBytes(data)
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}

/// Finds RELP frames in received bytes, without I/O. Checks what librelp checks: digits and letters where
/// they belong, the field lengths, the LF trailer, and DATALEN against `maxDataSize`.
package struct RELPFrameParser: Sendable {
    package enum Next: Hashable, Sendable {
        case frame(txnr: Int, command: Range<Int>, data: Range<Int>, consumed: Int)
        case needMoreData
        case malformed(RELPProtocolError.Kind)
    }

    package let maxDataSize: Int

    package init(maxDataSize: Int) {
        self.maxDataSize = maxDataSize
    }

    /// The frame at the start of `bytes`.
    package func next(in bytes: UnsafeRawBufferPointer) -> Next {
        let count = bytes.count
        var index = 0
        var txnr = 0
        while index < count, let digit = digitValue(bytes[index]) {
            guard index < 9 else { return .malformed(.invalidFrame) }
            txnr = txnr * 10 + digit
            index += 1
        }
        guard index < count else { return .needMoreData }
        guard index > 0, bytes[index] == UInt8(ascii: " ") else { return .malformed(.invalidFrame) }
        index += 1
        let commandStart = index
        while index < count, isLetter(bytes[index]) {
            guard index - commandStart < 32 else { return .malformed(.invalidFrame) }
            index += 1
        }
        guard index < count else { return .needMoreData }
        guard index > commandStart, bytes[index] == UInt8(ascii: " ") else { return .malformed(.invalidFrame) }
        let command = commandStart..<index
        index += 1
        let lengthStart = index
        var length = 0
        while index < count, let digit = digitValue(bytes[index]) {
            guard index - lengthStart < 9 else { return .malformed(.invalidFrame) }
            length = length * 10 + digit
            index += 1
        }
        guard length <= maxDataSize else { return .malformed(.tooLarge) }
        guard index < count else { return .needMoreData }
        guard index > lengthStart else { return .malformed(.invalidFrame) }
        if length == 0 {
            guard bytes[index] == UInt8(ascii: "\n") else { return .malformed(.invalidFrame) }
            return .frame(txnr: txnr, command: command, data: index..<index, consumed: index + 1)
        }
        guard bytes[index] == UInt8(ascii: " ") else { return .malformed(.invalidFrame) }
        let dataStart = index + 1
        guard count > dataStart + length else { return .needMoreData }
        guard bytes[dataStart + length] == UInt8(ascii: "\n") else { return .malformed(.invalidFrame) }
        return .frame(txnr: txnr, command: command, data: dataStart..<(dataStart + length), consumed: dataStart + length + 1)
    }

    @inline(__always)
    private func isLetter(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }
}

/// A RELP peer broke the protocol; the session answers what it can and closes. `kind` is a metric label
/// (`ferry_input_relp_frames_refused_total{reason}`).
package struct RELPProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    package enum Kind: String, Hashable, Sendable, CaseIterable {
        /// Not `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
        case invalidFrame = "invalid_frame"
        /// DATALEN above the maximum message size.
        case tooLarge = "too_large"
        /// A transaction number other than the one expected (the previous + 1, starting at 1).
        case unexpectedTxnr = "unexpected_txnr"
        /// A command before `open`, or `open` twice.
        case notOpen = "not_open"
        /// A command a server does not take (anything but `open`, `syslog`, `close`).
        case unknownCommand = "unknown_command"
        /// The connection closed inside a frame.
        case truncated
    }

    package let kind: Kind
    package let detail: String

    package init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    package var description: String { "RELP protocol error (\(kind.rawValue)): \(detail)" }
}
