/// How a file's bytes become events: format, line limit, multiline. Shared by every file of an input.
package struct ReadingSettings: Sendable {
    package var format: FileFormat
    package var maxLineBytes: Int
    /// The multiline start pattern and flush timeout (milliseconds), or nil for one event per line.
    package var multiline: (pattern: StartPattern, flushTimeoutMilliseconds: Int64)?

    package init(format: FileFormat = .text, maxLineBytes: Int = FileInputConfiguration.defaultMaxLineBytes,
                 multiline: (pattern: StartPattern, flushTimeoutMilliseconds: Int64)? = nil) {
        self.format = format
        self.maxLineBytes = maxLineBytes
        self.multiline = multiline
    }
}

/// Counts of what one file's reader changed or dropped, for metrics and logs.
package struct ReadingCounts: Hashable, Sendable {
    package var truncatedLines = 0
    package var skippedBytes = 0
    package var nulBytes = 0
    package var repairedEvents = 0
    package var wrappedEvents = 0
    package var truncatedEvents = 0
}

/// One file's reading state without I/O: fed the file's bytes in order, it adds events and knows the
/// position to commit with them.
///
/// `committed` is the position of the first byte not yet emitted (the start of a partial line or of a
/// pending multiline event) with the skip state of a cut line; `committedWindow` holds the bytes just before
/// it (up to `windowBytes`), stored with it so that a later reader can tell whether the file still holds the
/// same bytes there. A partial line waits for its newline; with multiline, the pending event and the
/// partial line are emitted once no byte came for the flush timeout (`flushIfDue`).
package struct FileReader {
    /// Bytes kept before a position to recognise the content there: enough to tell a rewritten file from
    /// the one that was read, small enough to store with every position.
    package static let windowBytes = 64

    private var splitter: LineSplitter
    private var joiner: MultilineJoiner?
    private var encoder: EventEncoder
    private let flushTimeout: Int64?
    /// The last bytes fed (up to `windowBytes`): what must precede `readOffset` in the file.
    package private(set) var tail: [UInt8]
    /// The bytes before `committed` (up to `windowBytes`); nil when they were fed too long ago to be kept
    /// (the caller reads them from the file).
    package private(set) var committedWindow: [UInt8]?
    /// When bytes last came (milliseconds of the injected clock).
    package private(set) var lastData: Int64

    /// A reader of `file` (the value of each event's `file` field) starting at `position`, whose preceding
    /// bytes are `window` (as stored with the position).
    package init(settings: ReadingSettings, file: String, position: FilePosition, window: [UInt8], now: Int64) {
        splitter = LineSplitter(maxLineBytes: settings.maxLineBytes, position: position)
        joiner = settings.multiline.map { MultilineJoiner(pattern: $0.pattern, maxBytes: settings.maxLineBytes) }
        encoder = EventEncoder(format: settings.format, file: file)
        flushTimeout = settings.multiline?.flushTimeoutMilliseconds
        tail = window
        committedWindow = window
        lastData = now
    }

    /// The file offset of the next byte to feed.
    package var readOffset: Int64 { splitter.readOffset }

    /// Everything before this position is in events already added (or skipped); see the type's comment.
    package var committed: FilePosition { joiner?.pendingStart ?? splitter.consumed }

    /// What this reader changed or dropped so far.
    package var counts: ReadingCounts {
        ReadingCounts(truncatedLines: splitter.truncatedLines, skippedBytes: splitter.skippedBytes, nulBytes: splitter.nulBytes,
                      repairedEvents: encoder.repaired, wrappedEvents: encoder.wrapped, truncatedEvents: joiner?.truncated ?? 0)
    }

    /// When the multiline flush timeout will emit what is pending; nil when nothing waits for it.
    package var flushDeadline: Int64? {
        guard let flushTimeout, joiner?.pendingStart != nil || splitter.partialCount > 0 else { return nil }
        return lastData + flushTimeout
    }

    /// Feeds the bytes at `readOffset`; adds the events they complete to `events`.
    package mutating func feed(_ chunk: UnsafeRawBufferPointer, now: Int64, into events: inout FileEvents) {
        guard chunk.count > 0 else { return }
        let before = committed
        let chunkStart = readOffset
        // The line callback works on local copies, so that it does not touch `self` while the splitter is
        // being mutated; moving them out (not copying) keeps their buffers uniquely referenced.
        var joiner = self.joiner
        self.joiner = nil
        var encoder = self.encoder
        splitter.feed(chunk) { line in FileReader.take(line, joiner: &joiner, encoder: &encoder, into: &events) }
        self.joiner = joiner
        self.encoder = encoder
        lastData = now
        let after = committed
        // The window before the new committed position, from the previous tail and this chunk when they hold it.
        let known = chunkStart - Int64(tail.count)
        if after != before || committedWindow == nil {
            let wanted = min(Int64(FileReader.windowBytes), after.offset)
            if after.offset - wanted >= known {
                committedWindow = slice(from: after.offset - wanted, to: after.offset, known: known, chunk: chunk)
            } else if after.offset != before.offset {
                committedWindow = nil
            }
        }
        let keep = min(Int64(FileReader.windowBytes), readOffset)
        tail = slice(from: readOffset - keep, to: readOffset, known: known, chunk: chunk)
    }

    /// Emits the pending multiline event and partial line when no byte came for the flush timeout; returns
    /// whether it did.
    @discardableResult
    package mutating func flushIfDue(now: Int64, into events: inout FileEvents) -> Bool {
        guard let deadline = flushDeadline, now >= deadline else { return false }
        flushAll(into: &events)
        return true
    }

    /// Emits whatever is pending, partial line included: the file is finished (deleted or rotated away and
    /// idle), so no newline will come.
    package mutating func finish(into events: inout FileEvents) {
        flushAll(into: &events)
    }

    /// The bytes of the file between `from` and `to`, from the previous tail (which starts at `known`) and `chunk`.
    private func slice(from: Int64, to: Int64, known: Int64, chunk: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(to - from))
        let tailEnd = known + Int64(tail.count)
        if from < tailEnd {
            out.append(contentsOf: tail[Int(from - known)..<Int(min(to, tailEnd) - known)])
        }
        if to > tailEnd {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[Int(max(from, tailEnd) - tailEnd)..<Int(to - tailEnd)]))
        }
        return out
    }

    private mutating func flushAll(into events: inout FileEvents) {
        var joiner = self.joiner
        self.joiner = nil
        var encoder = self.encoder
        splitter.takePartial { line in FileReader.take(line, joiner: &joiner, encoder: &encoder, into: &events) }
        joiner?.flush { encoder.encode($0, into: &events) }
        self.joiner = joiner
        self.encoder = encoder
        // Nothing is pending any more: the committed position is the read offset, preceded by the tail.
        committedWindow = tail
    }

    private static func take(_ line: SplitLine, joiner: inout MultilineJoiner?, encoder: inout EventEncoder, into events: inout FileEvents) {
        if joiner != nil {
            joiner!.add(line) { encoder.encode($0, into: &events) }
        } else if !line.bytes.isEmpty {
            encoder.encode(line.bytes, into: &events)
        }
    }
}
