import NIOCore

/// `SyslogFramer` in a channel pipeline: each message of the TCP stream as a `ByteBuffer` (a slice of what
/// was read, not a copy). Empty lines are skipped. A malformed frame throws `SyslogFrameError`, which the
/// connection handler counts before it closes the connection.
final class SyslogFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    private var framer: SyslogFramer

    init(maxMessageSize: Int) {
        framer = SyslogFramer(maxMessageSize: maxMessageSize)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try decode(context: context, buffer: &buffer, atEnd: false)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer, atEnd: true)
    }

    private func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer, atEnd: Bool) throws -> DecodingState {
        let next = buffer.withUnsafeReadableBytes { framer.next(in: $0, atEnd: atEnd) }
        switch next {
        case .frame(let message, let consumed):
            if !message.isEmpty {
                let frame = buffer.getSlice(at: buffer.readerIndex + message.lowerBound, length: message.count)!
                context.fireChannelRead(wrapInboundOut(frame))
            }
            buffer.moveReaderIndex(forwardBy: consumed)
            return .continue
        case .needMoreData:
            return .needMoreData
        case .malformed(let kind):
            throw SyslogFrameError(kind, maxMessageSize: framer.maxMessageSize)
        }
    }
}
