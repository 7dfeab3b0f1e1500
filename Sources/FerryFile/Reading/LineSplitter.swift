#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where reading a file stands, as it is stored: the offset of the first byte not yet emitted, and whether
/// the bytes from there up to the next newline are the tail of a line cut at `max_line_bytes` (to be skipped,
/// not emitted as a line of their own).
package struct FilePosition: Hashable, Sendable, CustomStringConvertible {
    package var offset: Int64
    package var skipping: Bool

    package init(offset: Int64, skipping: Bool = false) {
        self.offset = offset
        self.skipping = skipping
    }

    package static let start = FilePosition(offset: 0)

    package var description: String { skipping ? "\(offset)+skip" : "\(offset)" }
}

/// One line found by `LineSplitter`: its bytes (newline, trailing `\r` and NUL bytes removed; valid only during
/// the callback) and the positions before and after it.
package struct SplitLine {
    /// The line's bytes; may be empty (a blank line).
    package var bytes: UnsafeRawBufferPointer
    /// The position of the line's first byte: where a reader must start to read this line again.
    package var start: FilePosition
    /// The position after the line: everything before it is emitted or skipped.
    package var end: FilePosition
    /// The line was longer than `maxLineBytes` and is cut.
    package var truncated: Bool
}

/// Splits the bytes of a file into lines, without I/O: fed consecutive chunks, it calls back with each
/// complete line.
///
/// Guarantees:
/// - A line is emitted only once its newline has been read (or when `takePartial()` is called: a multiline
///   flush timeout, or a file that is finished). `consumed` is then the start of the partial line, so that a
///   restart reads it again whole.
/// - A line longer than `maxLineBytes` is emitted cut to `maxLineBytes` (at a UTF-8 character boundary) as soon
///   as that many bytes are known; the rest up to its newline is skipped. While skipping, `consumed` says so
///   (`skipping: true`): a reader restarted there skips to the next newline instead of taking the tail for a line.
/// - NUL bytes (the tail a writer leaves after a power cut: the size grew but the data never reached the disk)
///   are not stored: a run of NULs where a line starts is stepped over at once (the position moves past it
///   even without a newline), NULs inside a line are removed. Both are counted in `nulBytes`.
/// - `\r\n` ends a line like `\n`; a lone `\r` stays in the line.
package struct LineSplitter {
    package let maxLineBytes: Int
    /// The file offset of the next byte to feed.
    package private(set) var readOffset: Int64
    /// Bytes of the current line read so far (without leading NULs), when it spans chunks.
    private var partial: [UInt8] = []
    /// The file offset where the current line starts (after any leading NULs).
    private var lineStart: Int64
    private var skipping: Bool
    /// NUL bytes stepped over or removed so far.
    package private(set) var nulBytes = 0
    /// Lines cut at `maxLineBytes` so far.
    package private(set) var truncatedLines = 0
    /// Bytes of cut lines' tails skipped so far (their newlines not counted).
    package private(set) var skippedBytes = 0

    /// A splitter that starts reading at `position`.
    package init(maxLineBytes: Int, position: FilePosition) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
        self.readOffset = position.offset
        self.lineStart = position.offset
        self.skipping = position.skipping
    }

    /// Everything before this position has been emitted or skipped; what comes after is the partial line.
    package var consumed: FilePosition {
        skipping ? FilePosition(offset: readOffset, skipping: true) : FilePosition(offset: lineStart)
    }

    /// Bytes of the partial line held.
    package var partialCount: Int { partial.count }

    /// Feeds the next bytes of the file (those at `readOffset`); calls `emit` for each complete line.
    package mutating func feed(_ chunk: UnsafeRawBufferPointer, emit: (SplitLine) -> Void) {
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        let n = chunk.count
        var i = 0
        while i < n {
            if skipping {
                if let newline = memchr(base + i, 0x0A, n - i) {
                    let k = base.distance(to: UnsafeRawPointer(newline))
                    skippedBytes += k - i
                    i = k + 1
                    skipping = false
                    lineStart = readOffset + Int64(i)
                } else {
                    skippedBytes += n - i
                    i = n
                }
                continue
            }
            if partial.isEmpty {
                var j = i
                while j < n && chunk[j] == 0 { j += 1 }
                nulBytes += j - i
                i = j
                lineStart = readOffset + Int64(i)
                if i == n { break }
            }
            if let newline = memchr(base + i, 0x0A, n - i) {
                let k = base.distance(to: UnsafeRawPointer(newline))
                let end = FilePosition(offset: readOffset + Int64(k + 1))
                let start = FilePosition(offset: lineStart)
                if partial.isEmpty {
                    emitLine(UnsafeRawBufferPointer(rebasing: chunk[i..<k]), start: start, end: end, emit: emit)
                } else {
                    let room = maxLineBytes + 1 - partial.count
                    partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[i..<min(k, i + room)]))
                    let line = partial
                    partial.removeAll(keepingCapacity: partial.capacity <= 64 * 1024)
                    line.withUnsafeBytes { emitLine($0, start: start, end: end, emit: emit) }
                }
                i = k + 1
                lineStart = readOffset + Int64(i)
            } else {
                let room = maxLineBytes + 1 - partial.count
                partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[i..<min(n, i + room)]))
                if partial.count > maxLineBytes {
                    // Longer than allowed and still no newline: emit what fits now, skip the rest.
                    let line = partial
                    partial.removeAll(keepingCapacity: false)
                    skipping = true
                    let end = FilePosition(offset: readOffset + Int64(n), skipping: true)
                    line.withUnsafeBytes { emitLine($0, start: FilePosition(offset: lineStart), end: end, emit: emit) }
                }
                i = n
            }
        }
        readOffset += Int64(n)
    }

    /// Emits the partial line, if any, as a line of its own (a multiline flush timeout, or the end of a
    /// finished file), and returns whether there was one. Its rest, if more comes, becomes a line of its own.
    @discardableResult
    package mutating func takePartial(emit: (SplitLine) -> Void) -> Bool {
        guard !partial.isEmpty, !skipping else { return false }
        let line = partial
        partial.removeAll(keepingCapacity: false)
        let start = FilePosition(offset: lineStart)
        lineStart = readOffset
        line.withUnsafeBytes { emitLine($0, start: start, end: FilePosition(offset: readOffset), emit: emit) }
        return true
    }

    /// Cuts `raw` (a line without its newline) to `maxLineBytes`, drops a trailing `\r` and NULs, and emits it.
    private mutating func emitLine(_ raw: UnsafeRawBufferPointer, start: FilePosition, end: FilePosition, emit: (SplitLine) -> Void) {
        var line = raw
        var truncated = false
        if line.count > maxLineBytes {
            truncated = true
            truncatedLines += 1
            // Cut before a UTF-8 continuation byte, so the kept part ends on a whole character.
            var cut = maxLineBytes
            while cut > 0, maxLineBytes - cut < 3, line[cut] & 0xC0 == 0x80 { cut -= 1 }
            if line[cut] & 0xC0 == 0x80 { cut = maxLineBytes }
            let length = Int(end.offset - start.offset) - (end.skipping ? 0 : 1)
            skippedBytes += max(0, length - cut)
            line = UnsafeRawBufferPointer(rebasing: line[..<cut])
        } else if line.last == 0x0D {
            line = UnsafeRawBufferPointer(rebasing: line[..<(line.count - 1)])
        }
        if let base = line.baseAddress, line.count > 0, memchr(base, 0, line.count) != nil {
            var kept: [UInt8] = []
            kept.reserveCapacity(line.count)
            for byte in line where byte != 0 { kept.append(byte) }
            nulBytes += line.count - kept.count
            kept.withUnsafeBytes { emit(SplitLine(bytes: $0, start: start, end: end, truncated: truncated)) }
        } else {
            emit(SplitLine(bytes: line, start: start, end: end, truncated: truncated))
        }
    }
}
