public import NIOCore

/// One stored record: a fixed header and a payload of one gzip member holding NDJSON.
///
/// Layout (big-endian), 28 bytes of header then the payload:
///
/// | offset | size | field                                        |
/// |--------|------|----------------------------------------------|
/// | 0      | 1    | format version (1)                           |
/// | 1      | 1    | codec (1 = gzip member of NDJSON)            |
/// | 2      | 2    | flags, 0                                     |
/// | 4      | 4    | event count                                  |
/// | 8      | 8    | created-at, milliseconds since the Unix epoch |
/// | 16     | 4    | uncompressed payload length                  |
/// | 20     | 4    | payload length                               |
/// | 24     | 4    | CRC-32 of bytes 0..<24 and of the payload    |
///
/// The CRC covers the header too, so a flipped bit in the event count is caught like one in the payload.
/// LMDB checks no data; this CRC, checked on every read, does.
public struct QueueRecord: Sendable, Hashable {
    public static let headerSize = 28
    public static let formatVersion: UInt8 = 1

    /// How the payload is encoded. Only one so far; the byte is there so a later one can be added.
    public struct Codec: Hashable, Sendable {
        public let rawValue: UInt8
        /// One gzip member whose content is NDJSON: one JSON object per line, each line ending in `\n`.
        public static let gzipNDJSON = Codec(rawValue: 1)
    }

    public var codec: Codec
    /// Number of events (NDJSON lines) in the payload.
    public var eventCount: UInt32
    /// When the record was made, in milliseconds since the Unix epoch.
    public var createdAt: Int64
    /// Length of the payload once decompressed.
    public var uncompressedLength: UInt32
    /// The encoded payload: one gzip member.
    public var payload: ByteBuffer

    public init(codec: Codec = .gzipNDJSON, eventCount: UInt32, createdAt: Int64, uncompressedLength: UInt32, payload: ByteBuffer) {
        self.codec = codec
        self.eventCount = eventCount
        self.createdAt = createdAt
        self.uncompressedLength = uncompressedLength
        self.payload = payload
    }

    /// Bytes this record takes when stored: header plus payload.
    public var storedSize: Int { Self.headerSize + payload.readableBytes }

    /// Appends the stored form (header with CRC, then payload) to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: storedSize)
        let headerStart = buffer.writerIndex
        buffer.writeInteger(Self.formatVersion)
        buffer.writeInteger(codec.rawValue)
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(eventCount)
        buffer.writeInteger(createdAt)
        buffer.writeInteger(uncompressedLength)
        buffer.writeInteger(UInt32(payload.readableBytes))
        let crc = buffer.withUnsafeReadableBytes { all in
            let header = UnsafeRawBufferPointer(rebasing: all[(headerStart - buffer.readerIndex)...].prefix(24))
            return payload.withUnsafeReadableBytes { Gzip.crc32($0, continuing: Gzip.crc32(header)) }
        }
        buffer.writeInteger(crc)
        buffer.writeImmutableBuffer(payload)
    }

    /// The stored form as a new buffer.
    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(into: &buffer)
        return buffer
    }

    /// Checks and decodes a stored record, copying its payload out of `bytes`.
    ///
    /// `bytes` may point into memory that is valid only briefly (an LMDB value): the CRC is checked in place,
    /// and only a valid payload is copied. Throws a `WireError` naming what is wrong; never traps on bad input.
    public init(validating bytes: UnsafeRawBufferPointer) throws(WireError) {
        let header = try Self.header(of: bytes)
        let payloadBytes = UnsafeRawBufferPointer(rebasing: bytes[Self.headerSize...])
        let crc = Gzip.crc32(payloadBytes, continuing: Gzip.crc32(UnsafeRawBufferPointer(rebasing: bytes[..<24])))
        guard crc == header.crc else {
            throw WireError(.recordChecksumMismatch, "record checksum mismatch (stored \(hex(header.crc)), computed \(hex(crc))): the record is damaged")
        }
        self.codec = header.codec
        self.eventCount = header.eventCount
        self.createdAt = header.createdAt
        self.uncompressedLength = header.uncompressedLength
        var payload = ByteBuffer()
        payload.writeBytes(payloadBytes)
        self.payload = payload
    }

    /// The header fields of a stored record, checked for shape (version, codec, lengths) but not for CRC.
    public struct Header: Sendable, Hashable {
        public var codec: Codec
        public var eventCount: UInt32
        public var createdAt: Int64
        public var uncompressedLength: UInt32
        public var payloadLength: UInt32
        public var crc: UInt32
    }

    /// Reads the header of a stored record without touching the payload. Cheap; does not verify the CRC.
    public static func header(of bytes: UnsafeRawBufferPointer) throws(WireError) -> Header {
        guard bytes.count >= headerSize else {
            throw WireError(.recordTruncated, "record is \(bytes.count) bytes, shorter than its \(headerSize)-byte header: the record is damaged")
        }
        let version = bytes[0]
        guard version == formatVersion else {
            throw WireError(.recordUnknownVersion, "record format version \(version) is not the \(formatVersion) this build reads: the record is damaged or written by another Ferry version")
        }
        let codec = Codec(rawValue: bytes[1])
        guard codec == .gzipNDJSON else {
            throw WireError(.recordUnknownCodec, "record codec \(codec.rawValue) is unknown to this build: the record is damaged or written by a newer Ferry")
        }
        let header = Header(
            codec: codec,
            eventCount: bytes.loadBigEndian(at: 4),
            createdAt: Int64(bitPattern: bytes.loadBigEndian(at: 8)),
            uncompressedLength: bytes.loadBigEndian(at: 16),
            payloadLength: bytes.loadBigEndian(at: 20),
            crc: bytes.loadBigEndian(at: 24)
        )
        guard Int(header.payloadLength) == bytes.count - headerSize else {
            throw WireError(.recordLengthMismatch, "record header says \(header.payloadLength) payload bytes but \(bytes.count - headerSize) are stored: the record is damaged")
        }
        return header
    }

    /// The decompressed NDJSON payload, checked against the header's uncompressed length.
    public func decompressedPayload() throws(WireError) -> ByteBuffer {
        let out = try payload.withUnsafeReadableBytes { bytes throws(WireError) in
            try Gzip.decompress(bytes, maxOutputBytes: Int(uncompressedLength))
        }
        guard out.readableBytes == Int(uncompressedLength) else {
            throw WireError(.recordLengthMismatch, "record decompresses to \(out.readableBytes) bytes but its header says \(uncompressedLength): the record is damaged")
        }
        return out
    }

    /// The events of this record, one buffer per NDJSON line (without the newline), sharing one decompressed buffer.
    public func events() throws(WireError) -> [ByteBuffer] {
        let ndjson = try decompressedPayload()
        let lines = NDJSON.lines(of: ndjson)
        guard lines.count == Int(eventCount) else {
            throw WireError(.recordLengthMismatch, "record holds \(lines.count) lines but its header says \(eventCount) events: the record is damaged")
        }
        return lines
    }
}

/// Helpers for newline-delimited JSON.
public enum NDJSON {
    /// `{"message":"<text, JSON-escaped>"}`: how a line that is not JSON becomes an event (text/plain
    /// bodies, Kafka messages that are not JSON objects). `text` must be valid UTF-8.
    public static func messageEvent(_ text: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = Array(#"{"message":""#.utf8)
        out.reserveCapacity(text.count + 16)
        JSONString.appendEscaped(text, to: &out)
        out += Array(#""}"#.utf8)
        return out
    }

    /// Splits `buffer` at `\n` into slices without the newline; a final line without `\n` counts, empty lines do not.
    public static func lines(of buffer: ByteBuffer) -> [ByteBuffer] {
        var lines: [ByteBuffer] = []
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            for i in 0..<bytes.count where bytes[i] == UInt8(ascii: "\n") {
                if i > start { lines.append(buffer.getSlice(at: buffer.readerIndex + start, length: i - start)!) }
                start = i + 1
            }
            if start < bytes.count { lines.append(buffer.getSlice(at: buffer.readerIndex + start, length: bytes.count - start)!) }
        }
        return lines
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadBigEndian<T: FixedWidthInteger>(at offset: Int) -> T {
        T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
