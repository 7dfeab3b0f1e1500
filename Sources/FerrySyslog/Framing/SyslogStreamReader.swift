import NIOCore

/// One syslog TCP (or TLS) stream, read by read: splits what arrives into frames (`SyslogFramer`) and parses
/// each frame into the next batch (`SyslogEventBatch`), with the start of a frame that has not fully arrived
/// held until the next read.
///
/// All of a read's frames are parsed in one call, in one loop over its bytes: no pipeline message, buffer
/// slice or handler call per frame (a `ByteToMessageHandler` in front of the connection handler cost more
/// per 200-byte message than the framing itself).
struct SyslogStreamReader {
    private var framer: SyslogFramer
    private var parser: SyslogParser
    /// Unframed bytes: the start of a frame whose end has not arrived yet.
    private var held: ByteBuffer?
    /// Parsed events not yet handed to the store.
    private(set) var pending = SyslogEventBatch()

    init(maxMessageSize: Int, parser: SyslogParser) {
        framer = SyslogFramer(maxMessageSize: maxMessageSize)
        self.parser = parser
    }

    var maxMessageSize: Int { framer.maxMessageSize }

    /// Frames and parses what was held plus `read` into `pending`; with `atEnd` (the peer is gone), an
    /// unterminated last line is a message too. Returns the kind of a malformed frame, after which the
    /// stream cannot be read on (what came before it is in `pending`, nothing after it is read).
    mutating func read(_ read: ByteBuffer, atEnd: Bool = false, sourceIP: [UInt8]?, now: Int64,
                       parsed: (SyslogParseResult) -> Void) -> SyslogFrameError.Kind? {
        var buffer: ByteBuffer
        let grown: Bool
        if var earlier = held {
            held = nil  // so that `earlier` is the one reference and grows in place
            earlier.writeImmutableBuffer(read)
            buffer = earlier
            grown = true
        } else {
            buffer = read
            grown = false
        }
        var malformed: SyslogFrameError.Kind?
        let consumed = buffer.withUnsafeReadableBytes { bytes -> Int in
            var offset = 0
            while true {
                switch framer.next(in: UnsafeRawBufferPointer(rebasing: bytes[offset...]), atEnd: atEnd) {
                case .frame(let message, let consumed):
                    if !message.isEmpty {
                        let frame = UnsafeRawBufferPointer(rebasing: bytes[(offset + message.lowerBound)..<(offset + message.upperBound)])
                        if let result = pending.append(frame, parser: &parser, sourceIP: sourceIP, now: now) { parsed(result) }
                    }
                    offset += consumed
                case .needMoreData:
                    return offset
                case .malformed(let kind):
                    malformed = kind
                    return offset
                }
            }
        }
        guard malformed == nil else { return malformed }
        buffer.moveReaderIndex(forwardBy: consumed)
        if buffer.readableBytes == 0 {
            held = nil
        } else if grown, consumed == 0 {
            held = buffer  // a frame still arriving in our own buffer: grows in place
        } else {
            // The start of a frame, copied out: a read's buffer (up to 64 KiB, NIO's or NIOSSL's) is not kept
            // for it, nor our buffer once the frames before it were taken.
            held = ByteBuffer(bytes: buffer.readableBytesView)
        }
        return nil
    }

    /// The peer is gone: frames what is held as the stream's end (see `read`).
    mutating func finish(sourceIP: [UInt8]?, now: Int64, parsed: (SyslogParseResult) -> Void) -> SyslogFrameError.Kind? {
        guard let rest = held else { return nil }
        held = nil
        return read(rest, atEnd: true, sourceIP: sourceIP, now: now, parsed: parsed)
    }

    /// The batch gathered so far, leaving an empty one.
    mutating func takePending() -> SyslogEventBatch {
        let batch = pending
        pending = SyslogEventBatch()
        return batch
    }
}
