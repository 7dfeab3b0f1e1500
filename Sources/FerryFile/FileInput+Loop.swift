#if canImport(Glibc)
import Glibc
#endif
import FerryWire
import Logging
import ServiceLifecycle

/// One followed file's open descriptor and reader. Lives in the input's loop only.
final class OpenFile {
    let id: FileID
    var path: String
    /// Nil while closed for being quiet (`closeIdle`); opened again when the file changes.
    var descriptor: Int32?
    var reader: FileReader
    /// Left the globs: read to its end; no inotify event may come for it, so it is polled.
    var draining = false
    /// There may be bytes to read (an event came, or the last read filled its buffer).
    var readable = true
    var lastRead: Int64
    /// The position must be stored with the next append even if it did not move.
    var needsSave = true
    /// The reader starts at a stored position: the first read's check of the bytes before it confirms the file.
    var confirming = false
    /// The file's first bytes as read, while the fingerprint is still growing (files under 1 KiB).
    var fingerprint: [UInt8]
    var reported = ReadingCounts()

    init(id: FileID, path: String, descriptor: Int32, reader: FileReader, fingerprint: [UInt8], now: Int64) {
        self.id = id
        self.path = path
        self.descriptor = descriptor
        self.reader = reader
        self.fingerprint = fingerprint
        self.lastRead = now
    }
}

/// The input's loop: inotify events and rescans go to the tracker, its actions open and reset readers,
/// readers fill a batch, the batch and the positions go to the sink, and nothing is read while the sink waits.
final class ReadingLoop {
    private let input: FileInput
    private let watcher: DirectoryWatcher
    private var tracker: FileTracker
    private var files: [FileID: OpenFile] = [:]
    private var byPath: [String: FileID] = [:]
    /// Position writes and deletes not yet stored, by file (the latest wins).
    private var pending: [FileID: FilePositionUpdate] = [:]
    /// Keys to delete that name no file (damaged values).
    private var orphanKeys: [[UInt8]]
    private var events = FileEvents()
    /// Files stopped in this round: closed, and their copies decided, once their last bytes are stored.
    private var stopping: [FileID] = []
    private var nextRescan: Int64 = 0
    private var nextTick: Int64 = 0
    private var firstScan = true
    private let buffer: UnsafeMutableRawBufferPointer
    private let probe = SystemProbe()
    private var logger: Logger { input.logger }

    init(input: FileInput, watcher: DirectoryWatcher) {
        self.input = input
        self.watcher = watcher
        let configuration = input.configuration
        tracker = FileTracker(
            configuration: .init(startAt: configuration.startAt, forgetAfter: milliseconds(configuration.forgetAfter),
                                 drainIdle: milliseconds(configuration.drainIdle)),
            bootID: input.bootID, restored: input.restored, now: input.clock())
        orphanKeys = input.damagedKeys
        buffer = .allocate(byteCount: configuration.readChunkBytes + FileReader.windowBytes, alignment: 8)
    }

    deinit { buffer.deallocate() }

    func run(wake: WakeSignal, inbox: WatchInbox) async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = input.clock()
            handle(inbox.take(), now: now)
            if now >= nextRescan {
                rescan(now: now)
                nextRescan = now + milliseconds(input.configuration.rescanInterval)
                input.firstScan.open()
            }
            if now >= nextTick {
                // Drain idleness and pruning count in seconds: once a second is often enough.
                execute(tracker.tick(now: now), now: now)
                closeQuietFiles(now: now)
                nextTick = now + 1000
            }
            readRound(now: now)
            if hasWork {
                guard await append(now: input.clock()) else { return }
                continue
            }
            await wake.wait(timeout: nextDeadline(now: now).map { .milliseconds(max(1, $0 - now)) })
        }
    }

    func closeAll() {
        for file in files.values {
            if let descriptor = file.descriptor { close(descriptor) }
        }
        files = [:]
        byPath = [:]
    }

    // MARK: Observing

    private func handle(_ watched: [DirectoryWatcher.Event], now: Int64) {
        for event in watched {
            switch event {
            case .overflow:
                nextRescan = 0
            case .removed(let path):
                execute(tracker.pathRemoved(path, now: now), now: now)
            case .modified(let path):
                if let id = byPath[path], let file = files[id] {
                    file.readable = true
                } else if input.globs.matches(path) {
                    observe(path, now: now)
                }
            case .appeared(let path):
                observe(path, now: now)
            }
        }
    }

    private func observe(_ path: String, now: Int64) {
        let inGlob = input.globs.matches(path)
        guard let observation = FileSystem.observe(path, inGlob: inGlob) else { return }
        if !inGlob && tracker.state(of: observation.id) == nil { return }
        execute(tracker.observed(observation, now: now, probe: probe), now: now)
        settle(observation, now: now)
    }

    /// After the tracker saw `observation`: the reader follows the path, and reads if the size moved.
    private func settle(_ observation: FileObservation, now: Int64) {
        guard let file = files[observation.id] else { return }
        if let path = tracker.state(of: observation.id)?.path { setPath(file, path) }
        if observation.size != file.reader.readOffset { file.readable = true }
    }

    private func rescan(now: Int64) {
        for directory in input.globs.directories() { watcher.watch(directory) }
        var observations = input.globs.scan().compactMap { FileSystem.observe($0, inGlob: true) }
        if firstScan {
            // Files renamed while Ferry was down: look for their inode next to their last path.
            let seen = Set(observations.map(\.id))
            for state in tracker.unseenRestored where !seen.contains(state.id) {
                let directory = FileSystem.directory(of: state.path)
                for name in FileSystem.names(in: directory, inode: state.id.inode) {
                    let path = directory == "/" ? "/" + name : directory + "/" + name
                    if let found = FileSystem.observe(path, inGlob: input.globs.matches(path)), found.id == state.id {
                        observations.append(found)
                        break
                    }
                }
            }
            firstScan = false
        }
        execute(tracker.scanned(observations, now: now, probe: probe), now: now)
        for observation in observations { settle(observation, now: now) }
    }

    // MARK: Acting

    private func execute(_ actions: [FileTracker.Action], now: Int64) {
        for action in actions {
            switch action {
            case let .read(id, path, name, from, window, reason):
                start(id, path: path, name: name, from: from, window: window, reason: reason, now: now)
            case .drain(let id):
                files[id]?.draining = true
                files[id]?.readable = true
            case .follow(let id):
                files[id]?.draining = false
            case .stop(let id):
                if let file = files[id] {
                    while read(file, now: now) {}
                    file.reader.finish(into: &events)
                    file.needsSave = true
                }
                stopping.append(id)
            case .save(let state):
                pending[state.id] = FilePositionUpdate(key: FileState.key(input: input.name, id: state.id), value: state.encoded)
            case .delete(let id):
                pending[id] = FilePositionUpdate(key: FileState.key(input: input.name, id: id), value: nil)
                if let file = files[id] { forget(file) }
            case let .vanished(state, unread):
                input.metrics.vanishedFiles.increment()
                if unread > 0 { input.metrics.lostVanished.increment(by: Int(unread)) }
                let metadata: Logger.Metadata = ["ferry.input.name": "\(input.name)", "ferry.input.file.path": "\(state.path)",
                                                 "ferry.input.file.id": "\(state.id)", "ferry.input.file.offset": "\(state.position.offset)",
                                                 "ferry.input.file.unread_bytes_at_least": "\(unread)"]
                if unread > 0 {
                    logger.warning("followed file vanished while Ferry was down; its unread bytes are lost", metadata: metadata)
                } else {
                    logger.info("followed file vanished while Ferry was down", metadata: metadata)
                }
            }
        }
    }

    /// Opens (or resets) the reader of `id` at `from`.
    private func start(_ id: FileID, path: String, name: String, from: FileTracker.ReadStart, window: [UInt8]?,
                       reason: FileTracker.Reason, now: Int64) {
        report(reason, id: id, path: path)
        let descriptor: Int32
        if let file = files[id], let open = file.descriptor ?? reopen(file) {
            descriptor = open
        } else {
            guard let open = FileSystem.open(path) else { return }
            guard FileSystem.stat(descriptor: open)?.id == id else {
                // The path holds another file by now; its own event or the next scan brings it.
                close(open)
                return
            }
            descriptor = open
        }
        let position: FilePosition
        switch from {
        case .position(let given):
            position = given
        case .end:
            // At the end, but a partial last line is skipped to its newline rather than taken for a line.
            let size = FileSystem.stat(descriptor: descriptor)?.size ?? 0
            let last = size > 0 ? FileSystem.bytes(descriptor, at: size - 1, count: 1) : nil
            position = FilePosition(offset: size, skipping: last != nil && last != [0x0A])
        }
        let expected = window ?? windowBefore(position.offset, in: descriptor)
        let reader = FileReader(settings: input.settings, file: name, position: position, window: expected, now: now)
        let fingerprint = tracker.state(of: id)?.fingerprint ?? []
        let file: OpenFile
        if let existing = files[id] {
            file = existing
            file.reader = reader
            file.descriptor = descriptor
            file.fingerprint = fingerprint
            file.reported = ReadingCounts()
        } else {
            file = OpenFile(id: id, path: path, descriptor: descriptor, reader: reader, fingerprint: fingerprint, now: now)
            files[id] = file
            input.metrics.followed.record(files.count)
        }
        setPath(file, path)
        file.readable = true
        file.needsSave = true
        file.lastRead = now
        switch reason {
        case .resumed, .copy: file.confirming = window != nil
        default: file.confirming = false
        }
    }

    private func report(_ reason: FileTracker.Reason, id: FileID, path: String) {
        var metadata: Logger.Metadata = ["ferry.input.name": "\(input.name)", "ferry.input.file.path": "\(path)", "ferry.input.file.id": "\(id)"]
        switch reason {
        case .new:
            logger.info("following a new file", metadata: metadata)
        case .resumed:
            logger.debug("following a file from its stored position", metadata: metadata)
        case .truncated(let at):
            metadata["ferry.input.file.offset"] = "\(at)"
            input.metrics.restartsTruncated.increment()
            logger.warning("file was truncated or rewritten; reading it again from its start", metadata: metadata)
        case .replaced:
            input.metrics.restartsReplaced.increment()
            logger.info("inode holds another file than the stored one; reading it as a new file", metadata: metadata)
        case .powerLoss(let lost):
            metadata["ferry.input.file.lost_bytes"] = "\(lost)"
            if lost > 0 { input.metrics.lostPowerLoss.increment(by: Int(lost)) }
            logger.warning("file lost its tail in the host's power cut; resuming at its new end", metadata: metadata)
        case .copy(let original):
            metadata["ferry.input.file.copy_of"] = "\(original)"
            input.metrics.copies.increment()
            logger.info("file is a copy of content already read; continuing from that content's position", metadata: metadata)
        case .notACopy:
            input.metrics.restartsNotACopy.increment()
            logger.info("file taken for a copy differs from the content it matched; reading it from its start", metadata: metadata)
        }
    }

    // MARK: Reading

    private func readRound(now: Int64) {
        for file in files.values where file.draining { file.readable = true }
        var progress = true
        while progress && events.bytes.count < input.configuration.appendBytes {
            progress = false
            for id in files.keys.sorted() {
                guard let file = files[id], file.readable else { continue }
                if read(file, now: now) { progress = true }
                if events.bytes.count >= input.configuration.appendBytes { break }
            }
        }
        for file in files.values where file.reader.flushIfDue(now: now, into: &events) {
            file.needsSave = true
        }
    }

    /// Reads one chunk of `file`; returns whether anything changed (bytes fed, or the reader reset).
    private func read(_ file: OpenFile, now: Int64) -> Bool {
        guard let descriptor = file.descriptor ?? reopen(file) else {
            file.readable = false
            return false
        }
        let tail = file.reader.tail
        let offset = file.reader.readOffset
        let wanted = tail.count + input.configuration.readChunkBytes
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted])
        guard let n = FileSystem.read(descriptor, into: target, at: offset - Int64(tail.count)) else {
            logger.warning("file cannot be read; skipped until it changes", metadata: ["ferry.input.name": "\(input.name)",
                                                                                      "ferry.input.file.path": "\(file.path)", "errno": "\(errno)"])
            file.readable = false
            return false
        }
        // The bytes before the read offset must still be those read before: otherwise the file was truncated
        // (and maybe written again past the offset), or it is not the file the stored position belongs to.
        if n < tail.count || !tail.withUnsafeBytes({ $0.elementsEqual(UnsafeRawBufferPointer(rebasing: buffer[..<tail.count])) }) {
            let size = FileSystem.stat(descriptor: descriptor)?.size ?? 0
            let actions = tracker.contentChanged(file.id, size: size, now: now, probe: probe)
            guard !actions.isEmpty else {
                file.readable = false
                return false
            }
            execute(actions, now: now)
            return true
        }
        if file.confirming {
            file.confirming = false
            execute(tracker.confirmed(file.id), now: now)
        }
        guard n > tail.count else {
            file.readable = false
            return false
        }
        let data = UnsafeRawBufferPointer(rebasing: buffer[tail.count..<n])
        if file.fingerprint.count < FileState.fingerprintBytes && offset <= Int64(file.fingerprint.count) {
            file.fingerprint = Array(file.fingerprint.prefix(Int(offset))) + data.prefix(FileState.fingerprintBytes - Int(offset))
        }
        file.reader.feed(data, now: now, into: &events)
        events.sourceBytes += data.count
        let counts = file.reader.counts
        input.metrics.add(counts, since: file.reported)
        file.reported = counts
        file.lastRead = now
        if n < wanted { file.readable = false }
        return true
    }

    /// The bytes before `offset` (up to `FileReader.windowBytes`), read from the file.
    private func windowBefore(_ offset: Int64, in descriptor: Int32) -> [UInt8] {
        let count = Int(min(Int64(FileReader.windowBytes), offset))
        return FileSystem.bytes(descriptor, at: offset - Int64(count), count: count) ?? []
    }

    private func reopen(_ file: OpenFile) -> Int32? {
        guard let descriptor = FileSystem.open(file.path) else { return nil }
        guard FileSystem.stat(descriptor: descriptor)?.id == file.id else {
            close(descriptor)
            return nil
        }
        file.descriptor = descriptor
        return descriptor
    }

    private func closeQuietFiles(now: Int64) {
        let limit = milliseconds(input.configuration.closeIdle)
        for file in files.values where !file.draining && now - file.lastRead >= limit {
            if let descriptor = file.descriptor {
                close(descriptor)
                file.descriptor = nil
            }
        }
    }

    private func forget(_ file: OpenFile) {
        if let descriptor = file.descriptor { close(descriptor) }
        files[file.id] = nil
        if byPath[file.path] == file.id { byPath[file.path] = nil }
        input.metrics.followed.record(files.count)
    }

    private func setPath(_ file: OpenFile, _ path: String) {
        if byPath[file.path] == file.id { byPath[file.path] = nil }
        file.path = path
        byPath[path] = file.id
    }

    // MARK: Appending

    private var hasWork: Bool {
        !events.isEmpty || !pending.isEmpty || !orphanKeys.isEmpty || !stopping.isEmpty
            || files.values.contains { $0.needsSave || moved($0) }
    }

    /// Whether `file`'s reader is past the position the tracker has stored.
    private func moved(_ file: OpenFile) -> Bool {
        tracker.state(of: file.id).map { $0.position != file.reader.committed } ?? false
    }

    /// Hands the events and positions to the sink; false when Ferry stops first.
    private func append(now: Int64) async -> Bool {
        var updates = pending
        var states: [FileState] = []
        for file in files.values where file.needsSave || moved(file) {
            let position = file.reader.committed
            let window = file.reader.committedWindow ?? file.descriptor.map { windowBefore(position.offset, in: $0) } ?? []
            guard let state = tracker.progressed(file.id, to: position, window: window, fingerprint: file.fingerprint, now: now) else {
                file.needsSave = false
                continue
            }
            updates[file.id] = FilePositionUpdate(key: FileState.key(input: input.name, id: file.id), value: state.encoded)
            states.append(state)
        }
        let positions = orphanKeys.map { FilePositionUpdate(key: $0, value: nil) } + updates.keys.sorted().map { updates[$0]! }
        guard await input.sink.appendWaiting(events, positions: positions) else { return false }
        for state in states {
            tracker.committed(state, now: now)
            files[state.id]?.needsSave = false
        }
        events.removeAll()
        pending = [:]
        orphanKeys = []
        let stopped = stopping
        stopping = []
        for id in stopped {
            if let file = files[id] { forget(file) }
            execute(tracker.stopped(id, now: now, probe: probe), now: now)
        }
        return true
    }

    private func nextDeadline(now: Int64) -> Int64? {
        var deadline = nextRescan
        if files.values.contains(where: \.draining) { deadline = min(deadline, nextTick) }
        for file in files.values {
            if let flush = file.reader.flushDeadline { deadline = min(deadline, flush) }
            if file.draining { deadline = min(deadline, now + 1000) }
            if file.descriptor != nil && !file.draining { deadline = min(deadline, file.lastRead + milliseconds(input.configuration.closeIdle)) }
        }
        return deadline
    }
}
