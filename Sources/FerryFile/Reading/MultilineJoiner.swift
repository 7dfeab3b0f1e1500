/// Joins lines into multiline events (a Java stack trace is one event), without I/O or clock.
///
/// A line that matches the start pattern starts a new event; any other line is appended to the pending
/// event with `\n` between them. A line that comes when nothing is pending starts an event whether it
/// matches or not (the first line of a file, or after a flush). Blank lines inside an event are kept; a
/// blank line with nothing pending carries no event. An event is capped at `maxBytes`: the line that
/// would pass the cap is cut at a character boundary, the lines after it are dropped up to the next start
/// line, and the event counted in `truncated`.
///
/// The pending event is not emitted until the next start line comes or `flush` is called (the input's
/// flush timeout, or the end of a finished file); until then `pendingStart` is where a restarted reader
/// must read it again.
package struct MultilineJoiner {
    package let pattern: StartPattern
    package let maxBytes: Int
    private var pending: [UInt8] = []
    private var full = false
    /// The position of the pending event's first line; nil when nothing is pending.
    package private(set) var pendingStart: FilePosition?
    /// Events cut at `maxBytes` so far.
    package private(set) var truncated = 0

    package init(pattern: StartPattern, maxBytes: Int) {
        self.pattern = pattern
        self.maxBytes = maxBytes
    }

    /// Adds `line`; calls `emit` with the pending event when `line` starts a new one.
    package mutating func add(_ line: SplitLine, emit: (UnsafeRawBufferPointer) -> Void) {
        if pendingStart == nil {
            if line.bytes.isEmpty { return }
            start(line)
        } else if pattern.matches(line.bytes) {
            flush(emit: emit)
            start(line)
        } else if !full {
            append([0x0A])
            append(line.bytes)
        }
    }

    /// Emits the pending event, if any; returns whether there was one.
    @discardableResult
    package mutating func flush(emit: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard pendingStart != nil else { return false }
        pending.withUnsafeBytes { emit($0) }
        pending.removeAll(keepingCapacity: pending.capacity <= 64 * 1024)
        pendingStart = nil
        full = false
        return true
    }

    private mutating func start(_ line: SplitLine) {
        pendingStart = line.start
        append(line.bytes)
    }

    private mutating func append(_ bytes: some Collection<UInt8>) {
        let room = maxBytes - pending.count
        if bytes.count <= room {
            pending.append(contentsOf: bytes)
            return
        }
        var cut = room
        let array = Array(bytes)
        while cut > 0, room - cut < 3, array[cut] & 0xC0 == 0x80 { cut -= 1 }
        pending.append(contentsOf: array[..<cut])
        full = true
        truncated += 1
    }
}
