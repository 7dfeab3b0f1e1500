internal import CZlib
public import NIOCore
import Synchronization

/// gzip through zlib, used directly (compress-nio silently drops all but the first of concatenated members).
public enum Gzip {
    /// Compression level for stored records: zlib's fastest, which still shrinks JSON lines several times.
    public static let defaultLevel: Int32 = 1

    /// Inputs up to this size are compressed with the smaller hash table (memLevel 4, see `compress`).
    package static let smallInput = 2048

    /// Compresses `input` into one complete gzip member appended to `output`.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = defaultLevel, into output: inout ByteBuffer) {
        // Every member starts with zlib clearing its hash table (64 KiB at memLevel 8), more work than
        // compressing one small event, so inputs up to 2 KiB use memLevel 4: a 4 KiB table. Not lower:
        // memLevel also sizes the literal buffer (2^(memLevel + 6) symbols), and at memLevel 1 a member of
        // more than ~128 symbols is cut into blocks that each build their Huffman trees: from 250 bytes on
        // it was 1.2-2.6x slower and 8-17 % larger than memLevel 8; above 2 KiB memLevel 4 falls behind 8
        // (`tools/bench/queue --gzip`; docs/RESULTS.md, issue 20).
        let memoryLevel: Int32 = input.count <= smallInput ? 4 : 8
        compress(input, level: level, memoryLevel: memoryLevel, into: &output)
    }

    /// `compress` with zlib's `memLevel` (1–9) given instead of chosen by size: for `tools/bench/queue --gzip`,
    /// which compares the levels on the same events.
    package static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = defaultLevel, memoryLevel: Int32, into output: inout ByteBuffer) {
        GzipDeflater.withPooled(level: level, memoryLevel: memoryLevel) { $0.compress(input, into: &output) }
    }

    /// Decompresses every gzip member of `input` (concatenated members are one stream, RFC 1952).
    ///
    /// Throws `.truncatedGzip` if the input ends inside a member, `.invalidGzip` on damaged or non-gzip
    /// bytes, `.outputLimitExceeded` as soon as the output would pass `maxOutputBytes` (so a gzip bomb
    /// costs at most `maxOutputBytes` of memory).
    public static func decompress(_ input: UnsafeRawBufferPointer, maxOutputBytes: Int) throws(WireError) -> ByteBuffer {
        let inflater = try GzipInflater(maxOutputBytes: maxOutputBytes)
        var output = ByteBuffer()
        try inflater.inflate(input, into: &output)
        try inflater.finish()
        return output
    }

    /// CRC-32 (the zlib/gzip polynomial) of `bytes`, continuing from `crc`.
    public static func crc32(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        var crc = UInt(crc)
        var offset = 0
        while offset < bytes.count {  // zlib takes a 32-bit length
            let n = min(bytes.count - offset, Int(UInt32.max))
            crc = CZlib.crc32(crc, base.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
            offset += n
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}

/// One zlib deflate stream that writes whole gzip members. Reused through `withPooled`, because
/// `deflateInit2` allocates about 256 KiB and costs more than compressing a small event.
///
/// Not safe for concurrent use; the pool hands each instance to one caller at a time.
final class GzipDeflater: @unchecked Sendable {
    private let stream: UnsafeMutablePointer<z_stream>
    let level: Int32
    let memoryLevel: Int32

    private static let pool = Mutex<[GzipDeflater]>([])
    private static let poolLimit = 32

    static func withPooled<R>(level: Int32, memoryLevel: Int32, _ body: (GzipDeflater) throws -> R) rethrows -> R {
        let deflater = pool.withLock { pool -> GzipDeflater? in
            if let index = pool.lastIndex(where: { $0.level == level && $0.memoryLevel == memoryLevel }) { return pool.remove(at: index) }
            return nil
        } ?? GzipDeflater(level: level, memoryLevel: memoryLevel)
        defer {
            pool.withLock { pool in
                if pool.count < poolLimit { pool.append(deflater) }
            }
        }
        return try body(deflater)
    }

    init(level: Int32, memoryLevel: Int32) {
        self.level = level
        self.memoryLevel = memoryLevel
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 + 16 = gzip wrapper; memLevel 8 is zlib's default.
        let rc = deflateInit2_(stream, level, Z_DEFLATED, 15 + 16, memoryLevel, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "deflateInit2 failed with \(rc): zlib could not allocate its state")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    func compress(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) {
        precondition(input.count <= Int(UInt32.max), "a gzip member holds at most 4 GiB here")
        deflateReset(stream)
        let bound = Int(deflateBound(stream, uLong(input.count)))
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { out in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(out.count)
            let rc = deflate(stream, Z_FINISH)
            // deflateBound guarantees room for the whole member in one call.
            precondition(rc == Z_STREAM_END, "deflate did not finish within deflateBound (rc \(rc))")
            return out.count - Int(stream.pointee.avail_out)
        }
    }
}

/// A streaming gzip decoder that decodes every member of a concatenated stream and stops at an output limit.
///
/// Feed input in pieces with `inflate(_:into:)`, then call `finish()`, which throws if the input ended
/// inside a member. Not `Sendable`: one request decodes on one task.
public final class GzipInflater {
    private let stream: UnsafeMutablePointer<z_stream>
    /// The most bytes this decoder will produce in total.
    public let maxOutputBytes: Int
    /// Bytes produced so far.
    public private(set) var totalOutput = 0
    /// Complete members decoded so far.
    public private(set) var membersCompleted = 0
    /// True while a member has started and not ended.
    private var inMember = false

    private static let chunk = 64 * 1024

    public init(maxOutputBytes: Int) throws(WireError) {
        self.maxOutputBytes = maxOutputBytes
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = inflateInit2_(stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw WireError(.zlib, "zlib inflateInit2 failed with code \(rc); the process may be out of memory")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Decodes `input`, appending the output to `output`.
    public func inflate(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(WireError) {
        var offset = 0
        repeat {
            let step = try inflateMember(UnsafeRawBufferPointer(rebasing: input[offset...]), into: &output)
            offset += step.consumed
            if step.consumed == 0 && !step.memberEnded { return }
        } while offset < input.count
    }

    /// Decodes `input` up to the end of the current member at most, appending the output to `output`.
    /// Returns how many bytes of `input` it consumed and whether a member ended there (its output is then
    /// all in `output`): so a caller can tell which compressed bytes made which member, and store a member
    /// as it arrived. Call again with the rest of `input`.
    public func inflateMember(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(WireError) -> (consumed: Int, memberEnded: Bool) {
        var consumed = 0
        // zlib may take the last input bytes and still hold output (when the room ran out): go on while the
        // room was filled, or that output would wait for a next call that never comes.
        var roomFilled = false
        while consumed < input.count || roomFilled {
            let remainingOutput = maxOutputBytes - totalOutput
            // One byte more than allowed lets us tell "exactly at the limit" from "over it".
            let room = min(Self.chunk, remainingOutput + 1)
            var rc: Int32 = Z_OK
            var usedIn = 0
            let produced = output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
                let availIn = min(input.count - consumed, Int(UInt32.max))
                stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress.map { $0.advanced(by: consumed).assumingMemoryBound(to: Bytef.self) })
                stream.pointee.avail_in = uInt(availIn)
                stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(room)
                rc = CZlib.inflate(stream, Z_NO_FLUSH)
                usedIn = availIn - Int(stream.pointee.avail_in)
                return room - Int(stream.pointee.avail_out)
            }
            consumed += usedIn
            totalOutput += produced
            roomFilled = produced == room
            if usedIn > 0 { inMember = true }
            if totalOutput > maxOutputBytes {
                throw WireError(.outputLimitExceeded, "gzip input decompresses to more than \(maxOutputBytes) bytes; send smaller requests or raise the limit")
            }
            switch rc {
            case Z_STREAM_END:
                membersCompleted += 1
                inMember = false
                inflateReset(stream)
                return (consumed, true)
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress possible: zlib wants more input than we have (handled by finish()) or more room.
                if usedIn == 0 && produced == 0 { return (consumed, false) }
            case Z_DATA_ERROR, Z_NEED_DICT:
                let reason = stream.pointee.msg.map { String(cString: $0) } ?? "damaged deflate data"
                throw WireError(.invalidGzip, "input is not valid gzip (\(reason)) after \(consumed) bytes; send gzip data or drop Content-Encoding: gzip")
            default:
                throw WireError(.zlib, "zlib inflate failed with code \(rc); the process may be out of memory")
            }
        }
        return (consumed, false)
    }

    /// Ends the stream: throws `.truncatedGzip` if the input stopped inside a member.
    public func finish() throws(WireError) {
        if inMember {
            throw WireError(.truncatedGzip, "gzip input ends inside a member after \(totalOutput) decompressed bytes; the body was cut short, send it again whole")
        }
    }
}
