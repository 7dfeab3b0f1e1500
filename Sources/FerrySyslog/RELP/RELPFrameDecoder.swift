import NIOCore

/// `RELPFrameParser` in a channel pipeline: each frame with its data as a slice of what was read. A frame
/// that cannot be read throws `RELPProtocolError`; the connection handler answers it through the session.
final class RELPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = RELPFrame

    private let parser: RELPFrameParser

    init(maxDataSize: Int) {
        parser = RELPFrameParser(maxDataSize: maxDataSize)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let next = buffer.withUnsafeReadableBytes { bytes -> (RELPFrameParser.Next, RELPFrame.Command?) in
            let next = parser.next(in: bytes)
            if case .frame(_, let command, _, _) = next {
                return (next, RELPFrame.Command(UnsafeRawBufferPointer(rebasing: bytes[command])))
            }
            return (next, nil)
        }
        switch next {
        case (.frame(let txnr, _, let data, let consumed), let command?):
            let payload = buffer.getSlice(at: buffer.readerIndex + data.lowerBound, length: data.count)!
            buffer.moveReaderIndex(forwardBy: consumed)
            context.fireChannelRead(wrapInboundOut(RELPFrame(txnr: txnr, command: command, data: payload)))
            return .continue
        case (.malformed(let kind), _):
            throw RELPProtocolError(kind, kind == .tooLarge
                ? "a frame's DATALEN is above the limit of \(parser.maxDataSize) bytes"
                : "the bytes received are not a RELP frame (TXNR SP COMMAND SP DATALEN [SP DATA] LF)")
        default:
            return .needMoreData
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData, buffer.readableBytes > 0 {
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            throw RELPProtocolError(.truncated, "the connection closed inside a frame")
        }
        return state
    }
}
