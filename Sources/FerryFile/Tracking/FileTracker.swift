/// A look at one path: what `stat` and the first bytes said.
package struct FileObservation: Hashable, Sendable {
    package var path: String
    package var id: FileID
    package var size: Int64
    /// The first `min(size, FileState.fingerprintBytes)` bytes.
    package var fingerprint: [UInt8]
    /// The path is matched by the input's globs (and not excluded).
    package var inGlob: Bool

    package init(path: String, id: FileID, size: Int64, fingerprint: [UInt8], inGlob: Bool = true) {
        self.path = path
        self.id = id
        self.size = size
        self.fingerprint = fingerprint
        self.inGlob = inGlob
    }
}

/// Reads a few bytes of a file for the tracker's copy checks: the I/O the tracker needs, injected.
package protocol FileContentProbe {
    /// `count` bytes of file `id` at `offset`, read through `path`; nil when `path` no longer holds that
    /// file or the file is shorter.
    func bytes(of id: FileID, path: String, at offset: Int64, count: Int) -> [UInt8]?
}

/// Which file is which, and where to read it: a state machine without I/O or clock, fed with observations
/// (stat results and fingerprints, paths gone, what the reader found) and returning actions.
///
/// Rules (each tested in `FileTrackerTests`):
/// - **Identity** is device + inode + fingerprint (`FileState`). A known device/inode whose first bytes no
///   longer extend the stored fingerprint is another file: rewritten in place while open (a truncation), or,
///   when Ferry held no descriptor, an inode reused after a delete (read as a new file). Files with the same
///   first bytes are told apart by device/inode.
/// - **Rename**: same device/inode, so the same file: its path is updated; never read twice, whatever the glob
///   matches. Leaving the globs (renamed out, deleted) it is *drained*: read to its end through the open
///   descriptor, stopped once idle for `drainIdle`, then kept as *gone*.
/// - **Truncation**: a size below the position, or other bytes before it (found by the reader) → read
///   again from 0, the old content remembered as *departed* for copy matching.
/// - **Copies** (copytruncate, `cp`): a new file whose fingerprint matches content that left its file
///   (departed, or a gone file) continues from that content's position, checked by the bytes before it when
///   the copy is that long; shorter, it is a *presumed copy* (nothing read until it grows past the position,
///   where the bytes before it decide). A new file whose bytes so far equal a live file's bytes at the same
///   offsets is a copy of that live file: not read while the original holds the content, and treated as
///   above once the original is truncated or gone. A presumed copy that turns out to differ is read from 0.
/// - **Power loss of the writer**: after a reboot (boot id changed), a file shorter than its position lost its
///   unsynced tail: resume at the new end and count the lost bytes; other bytes before the position (NULs)
///   are not a truncation either. Applies to the first look after the reboot only.
/// - **Start**: a restored file not found by the first scan (nor located by its inode next to its last path)
///   vanished while Ferry was down: its unread bytes are reported, its state kept as gone. Gone states and
///   departed content are pruned `forgetAfter` after the file was last seen.
/// - `start_at: end` applies to the files of the first scan that have no stored state; later files start at 0.
package struct FileTracker {
    package struct Configuration: Sendable {
        package var startAt: FileInputConfiguration.StartAt
        /// Milliseconds a gone file's state (and departed content) is kept after the file was last seen.
        package var forgetAfter: Int64
        /// Milliseconds without a byte after which a drained file is stopped.
        package var drainIdle: Int64

        package init(startAt: FileInputConfiguration.StartAt = .beginning, forgetAfter: Int64 = 7 * 24 * 3_600_000, drainIdle: Int64 = 10_000) {
            self.startAt = startAt
            self.forgetAfter = forgetAfter
            self.drainIdle = drainIdle
        }
    }

    /// Where a reader starts.
    package enum ReadStart: Hashable, Sendable {
        case position(FilePosition)
        /// At the end of the file (after its last newline is skipped to): `start_at: end`.
        case end
    }

    /// Why a reader (re)starts where it does; logged and counted by the input.
    package enum Reason: Hashable, Sendable {
        /// A file never seen.
        case new
        /// A stored position, or a file found again.
        case resumed
        /// The size fell below the position, or the bytes before it changed: read again from 0.
        case truncated(at: Int64)
        /// The inode holds another file than the stored one (reused after a delete): read from its start.
        case replaced
        /// After a reboot the file is shorter than the position: resumed at its new end.
        case powerLoss(lostBytes: Int64)
        /// A copy of content already read (from the file `of`): resumed at that content's position.
        case copy(of: FileID)
        /// A presumed copy turned out to differ: read from 0.
        case notACopy
    }

    package enum Action: Hashable, Sendable {
        /// (Re)start reading `id` through `path` at `from`. `window`: the bytes that must precede the position
        /// (nil: none checked); `name`: the value of the events' `file` field.
        case read(FileID, path: String, name: String, from: ReadStart, window: [UInt8]?, reason: Reason)
        /// `id` left the globs: read it to its end; it is stopped when idle.
        case drain(FileID)
        /// `id` is back in the globs: follow it again.
        case follow(FileID)
        /// Stop reading `id`: read what is left, emit its last partial line, close it, then call `stopped`.
        case stop(FileID)
        /// Store this state with the next append.
        case save(FileState)
        /// Delete the stored state of `id` with the next append.
        case delete(FileID)
        /// A followed file vanished while Ferry was down: at least `unreadAtLeast` bytes were never read.
        case vanished(FileState, unreadAtLeast: Int64)
    }

    enum Phase: Hashable {
        /// From the positions table, not yet seen in this run.
        case restored
        /// In the globs, read as it grows.
        case following
        /// Out of the globs: read to its end, then stopped.
        case draining
        /// Out of reach; kept until pruned.
        case gone
        /// A copy of the live file `of`: not read while that file holds the content.
        case copy(of: FileID)
    }

    struct Entry {
        var state: FileState
        var phase: Phase
        /// Restored from before a reboot and not yet read in this one.
        var rebooted: Bool
        /// When the file last grew or was read (drain idleness).
        var lastActivity: Int64
        /// For copies: the last look at the file, to decide again.
        var observation: FileObservation? = nil
        /// When the file became gone in this run (nil: gone before the restart; its last-seen time counts).
        var goneAt: Int64? = nil
    }

    /// Content that left its file (a truncation): what a copy of it continues from.
    struct Departed {
        /// Tells departed contents apart (one file may be truncated several times).
        var serial: Int
        var from: FileID
        var fingerprint: [UInt8]
        var position: FilePosition
        var window: [UInt8]
        var name: String
        var since: Int64
    }

    package let configuration: Configuration
    package let bootID: String
    private var entries: [FileID: Entry] = [:]
    private var departed: [Departed] = []
    private var departedSerial = 0
    private var firstScanDone = false

    /// A copy shorter than the position of the content it matches is taken for a copy only if that content
    /// left its file this recently (copies are made around the rotation); older content must be proven by the
    /// bytes before its position. Milliseconds.
    package static let recentDeparture: Int64 = 60_000

    /// A tracker that knows the `restored` states (read back from the positions table).
    package init(configuration: Configuration, bootID: String, restored: [FileState], now: Int64) {
        self.configuration = configuration
        self.bootID = bootID
        for state in restored {
            entries[state.id] = Entry(state: state, phase: state.gone ? .gone : .restored, rebooted: state.bootID != bootID,
                                      lastActivity: now)
        }
    }

    // MARK: Queries

    /// The state of `id`, if it is known.
    package func state(of id: FileID) -> FileState? { entries[id]?.state }

    /// Every known state (followed, draining, gone), by id.
    package var states: [FileState] { entries.values.filter { !$0.isCopy }.map(\.state).sorted { $0.id < $1.id } }

    /// Restored files not yet seen in this run: before the first scan completes, the input looks for them
    /// next to their last path (a rename while Ferry was down) and reports what it finds out of the globs.
    package var unseenRestored: [FileState] { entries.values.filter { $0.phase == .restored }.map(\.state).sorted { $0.id < $1.id } }

    /// Whether `id` is a copy that is not read (for the input's bookkeeping).
    package func isUnreadCopy(_ id: FileID) -> Bool { entries[id]?.isCopy ?? false }

    // MARK: Observations

    /// The result of a full scan: every path the globs match now (plus, at the first scan, restored files
    /// located out of the globs). Files not in it left the globs; restored files not in it vanished.
    package mutating func scanned(_ observations: [FileObservation], now: Int64, probe: some FileContentProbe) -> [Action] {
        var actions: [Action] = []
        // Known files first: a truncation seen in this scan must be known before a new file is taken for a copy.
        let known = observations.filter { entries[$0.id] != nil }
        let unknown = observations.filter { entries[$0.id] == nil }
        for observation in known + unknown {
            actions += observed(observation, now: now, probe: probe)
        }
        let seen = Set(observations.map(\.id))
        for id in entries.keys.sorted() where !seen.contains(id) {
            guard var entry = entries[id] else { continue }
            switch entry.phase {
            case .restored:
                entry.phase = .gone
                entry.state.gone = true
                entry.goneAt = now
                entries[id] = entry
                actions.append(.vanished(entry.state, unreadAtLeast: max(0, entry.state.size - entry.state.position.offset)))
                actions.append(.save(entry.state))
            case .following:
                entry.phase = .draining
                entry.lastActivity = now
                entries[id] = entry
                actions.append(.drain(id))
            case .copy:
                entries[id] = nil
            case .draining, .gone:
                break
            }
        }
        firstScanDone = true
        return actions + prune(now: now)
    }

    /// One path looked at (a file created, changed, moved in).
    package mutating func observed(_ observation: FileObservation, now: Int64, probe: some FileContentProbe) -> [Action] {
        if let entry = entries[observation.id] {
            if entry.isCopy {
                entries[observation.id] = nil
                return classify(observation, now: now, probe: probe)
            }
            return observeKnown(observation, entry, now: now, probe: probe)
        }
        guard observation.inGlob, observation.size > 0 else { return [] }
        // Device numbers may change across a reboot: the same inode at the same path with the same first bytes
        // is the same file.
        if let moved = entries.values.first(where: {
            $0.phase == .restored && $0.rebooted && $0.state.id.inode == observation.id.inode && $0.state.path == observation.path
                && FileTracker.compatible($0.state.fingerprint, observation.fingerprint)
        }) {
            let old = moved.state.id
            var entry = moved
            entry.state.id = observation.id
            entries[old] = nil
            entries[observation.id] = entry
            return [.delete(old)] + observeKnown(observation, entry, now: now, probe: probe)
        }
        return classify(observation, now: now, probe: probe)
    }

    /// A path is gone (deleted, or moved away; a move into a watched directory is observed next).
    package mutating func pathRemoved(_ path: String, now: Int64) -> [Action] {
        var actions: [Action] = []
        for id in entries.keys.sorted() {
            guard var entry = entries[id], entry.state.path == path else { continue }
            switch entry.phase {
            case .following:
                entry.phase = .draining
                entry.lastActivity = now
                entries[id] = entry
                actions.append(.drain(id))
            case .copy:
                entries[id] = nil
            case .restored, .draining, .gone:
                break
            }
        }
        return actions
    }

    /// The reader of `id` found the file shorter than its read offset, or other bytes before it; `size` is the
    /// file's size now.
    package mutating func contentChanged(_ id: FileID, size: Int64, now: Int64, probe: some FileContentProbe) -> [Action] {
        guard var entry = entries[id], !entry.isCopy else { return [] }
        entry.state.size = size
        entry.lastActivity = now
        if entry.state.presumedCopy {
            if size < entry.state.position.offset {
                entries[id] = entry
                return []
            }
            return restartAsNew(&entry, reason: .notACopy)
        }
        if entry.rebooted {
            entry.rebooted = false
            let lost = max(0, entry.state.position.offset - size)
            if lost > 0 { entry.state.position = FilePosition(offset: size) }
            entry.state.window = []
            entry.state.bootID = bootID
            entries[id] = entry
            return [.read(id, path: entry.state.path, name: entry.state.name, from: .position(entry.state.position), window: nil,
                          reason: .powerLoss(lostBytes: lost)),
                    .save(entry.state)]
        }
        var actions = truncate(&entry, fingerprint: [], now: now)
        entries[id] = entry
        actions.append(.save(entry.state))
        return actions + releaseCopies(of: id, now: now, probe: probe)
    }

    /// The reader of `id` found the bytes before the stored position as they were: the file is the one that
    /// was read. Returns the state to save (with this boot's id, so that a later start in this boot does not
    /// take a truncation for a power loss).
    package mutating func confirmed(_ id: FileID) -> [Action] {
        guard var entry = entries[id], !entry.isCopy, entry.rebooted || entry.state.bootID != bootID else { return [] }
        entry.rebooted = false
        entry.state.bootID = bootID
        entries[id] = entry
        return [.save(entry.state)]
    }

    // MARK: Progress

    /// The state `id` would have after its events up to `position` are stored: what to save with them.
    /// `window` holds the bytes before `position`; `fingerprint` the file's first bytes as read (may be longer
    /// than the stored one while the file is small). Nil if `id` is not tracked.
    package func progressed(_ id: FileID, to position: FilePosition, window: [UInt8], fingerprint: [UInt8]?, now: Int64) -> FileState? {
        guard let entry = entries[id], !entry.isCopy else { return nil }
        var state = entry.state
        if position != state.position { state.presumedCopy = false }
        state.position = position
        state.window = window
        if let fingerprint, fingerprint.count > state.fingerprint.count, fingerprint.starts(with: state.fingerprint) {
            state.fingerprint = Array(fingerprint.prefix(FileState.fingerprintBytes))
        }
        state.size = max(state.size, position.offset)
        state.lastSeen = now
        state.bootID = bootID
        return state
    }

    /// `state` (from `progressed`) is stored.
    package mutating func committed(_ state: FileState, now: Int64) {
        guard var entry = entries[state.id], !entry.isCopy else { return }
        if entry.state.position != state.position { entry.lastActivity = now }
        let gone = entry.state.gone
        entry.state = state
        entry.state.gone = gone
        entry.rebooted = false
        entries[state.id] = entry
    }

    /// Time passes: drained files idle for `drainIdle` are stopped; old gone states are pruned.
    package mutating func tick(now: Int64) -> [Action] {
        var actions: [Action] = []
        for id in entries.keys.sorted() {
            guard var entry = entries[id], entry.phase == .draining, now - entry.lastActivity >= configuration.drainIdle else { continue }
            entry.phase = .gone
            entry.state.gone = true
            entry.goneAt = now
            entries[id] = entry
            actions.append(.stop(id))
            actions.append(.save(entry.state))
        }
        return actions + prune(now: now)
    }

    /// The input finished stopping `id` (its last bytes are stored): copies waiting on it are decided now.
    package mutating func stopped(_ id: FileID, now: Int64, probe: some FileContentProbe) -> [Action] {
        releaseCopies(of: id, now: now, probe: probe)
    }

    // MARK: Decisions

    private mutating func observeKnown(_ observation: FileObservation, _ known: Entry, now: Int64, probe: some FileContentProbe) -> [Action] {
        var entry = known
        let id = observation.id
        var actions: [Action] = []
        var restarted = false
        var save = entry.state.path != observation.path
        if observation.size != entry.state.size { entry.lastActivity = now }
        entry.state.path = observation.path
        entry.state.size = observation.size
        entry.state.lastSeen = now
        if !FileTracker.compatible(entry.state.fingerprint, observation.fingerprint) {
            if entry.state.presumedCopy {
                return restartAsNew(&entry, reason: .notACopy)
            }
            switch entry.phase {
            case .following, .draining:
                // An open descriptor keeps the inode: the file was rewritten in place.
                actions += truncate(&entry, fingerprint: observation.fingerprint, now: now)
                restarted = true
            default:
                // Nothing held the inode: it was freed and given to another file.
                entries[id] = nil
                return [.delete(id)] + classify(observation, now: now, probe: probe, reason: .replaced)
            }
        } else {
            if observation.fingerprint.count > entry.state.fingerprint.count { entry.state.fingerprint = observation.fingerprint }
            if observation.size < entry.state.position.offset && !entry.state.presumedCopy {
                if entry.rebooted {
                    let lost = entry.state.position.offset - observation.size
                    entry.rebooted = false
                    entry.state.position = FilePosition(offset: observation.size)
                    entry.state.window = []
                    entry.state.bootID = bootID
                    actions.append(.read(id, path: entry.state.path, name: entry.state.name, from: .position(entry.state.position),
                                         window: nil, reason: .powerLoss(lostBytes: lost)))
                } else {
                    actions += truncate(&entry, fingerprint: observation.fingerprint, now: now)
                }
                restarted = true
            }
        }
        save = save || restarted
        switch (entry.phase, observation.inGlob) {
        case (.restored, _), (.gone, _):
            entry.phase = observation.inGlob ? .following : .draining
            entry.state.gone = false
            entry.goneAt = nil
            entry.lastActivity = now
            save = true
            if !restarted {
                actions.append(.read(id, path: entry.state.path, name: entry.state.name, from: .position(entry.state.position),
                                     window: entry.state.window, reason: .resumed))
            }
            if !observation.inGlob { actions.append(.drain(id)) }
        case (.following, false):
            entry.phase = .draining
            entry.lastActivity = now
            actions.append(.drain(id))
            save = true
        case (.draining, true):
            entry.phase = .following
            actions.append(.follow(id))
            save = true
        default:
            break
        }
        entries[id] = entry
        if save { actions.append(.save(entry.state)) }
        return restarted ? actions + releaseCopies(of: id, now: now, probe: probe) : actions
    }

    /// Decides what an unknown file is: a copy of departed content, a copy of a live file, or a new file.
    private mutating func classify(_ observation: FileObservation, now: Int64, probe: some FileContentProbe, reason: Reason = .new) -> [Action] {
        let id = observation.id
        guard observation.inGlob, observation.size > 0 else { return [] }
        // 1. Content that left its file: a truncation's old content, or a gone file.
        var verified: Departed?
        var short: Departed?
        for content in departedContents() where content.from != id && content.position.offset > 0
            && FileTracker.compatible(content.fingerprint, observation.fingerprint) {
            if observation.size >= content.position.offset {
                let window = content.window
                if window.isEmpty || probe.bytes(of: id, path: observation.path, at: content.position.offset - Int64(window.count), count: window.count) == window {
                    verified = content
                    break
                }
            } else if short == nil && now - content.since <= FileTracker.recentDeparture {
                short = content
            }
        }
        if let content = verified ?? short {
            var actions: [Action] = []
            if let index = departed.firstIndex(where: { $0.serial == content.serial }) {
                departed.remove(at: index)
            } else {
                entries[content.from] = nil
                actions.append(.delete(content.from))
            }
            // The content's fingerprint (the longer one): a presumed copy that grows with other bytes stops matching it.
            let fingerprint = content.fingerprint.count > observation.fingerprint.count ? content.fingerprint : observation.fingerprint
            let state = FileState(id: id, fingerprint: fingerprint, position: content.position, window: content.window,
                                  name: content.name, path: observation.path, size: observation.size, lastSeen: now, bootID: bootID,
                                  presumedCopy: verified == nil)
            entries[id] = Entry(state: state, phase: .following, rebooted: false, lastActivity: now)
            actions.append(.read(id, path: observation.path, name: content.name, from: .position(content.position), window: content.window,
                                 reason: .copy(of: content.from)))
            actions.append(.save(state))
            return actions
        }
        // 2. A copy of a live file: it holds the bytes before that file's position (checked against the stored
        //    window, so that it holds even if the original was truncated a moment ago), or, shorter than the
        //    position, its last bytes are the original's bytes at the same offsets.
        let count = min(FileReader.windowBytes, Int(observation.size))
        let at = observation.size - Int64(count)
        let originals = entries.values.filter {
            [.following, .draining, .restored].contains($0.phase) && FileTracker.compatible($0.state.fingerprint, observation.fingerprint)
        }
        for original in originals.sorted(by: { $0.state.id < $1.state.id }) {
            let position = original.state.position.offset
            let window = original.state.window
            let isCopy: Bool
            if position > 0 && observation.size >= position {
                isCopy = probe.bytes(of: id, path: observation.path, at: position - Int64(window.count), count: window.count) == window
            } else if let mine = probe.bytes(of: id, path: observation.path, at: at, count: count) {
                isCopy = mine == probe.bytes(of: original.state.id, path: original.state.path, at: at, count: count)
            } else {
                isCopy = false
            }
            guard isCopy else { continue }
            let state = FileState(id: id, fingerprint: observation.fingerprint, position: .start, window: [], name: observation.path,
                                  path: observation.path, size: observation.size, lastSeen: now, bootID: bootID)
            entries[id] = Entry(state: state, phase: .copy(of: original.state.id), rebooted: false, lastActivity: now, observation: observation)
            return []
        }
        // 3. A new file.
        let state = FileState(id: id, fingerprint: observation.fingerprint, position: .start, window: [], name: observation.path,
                              path: observation.path, size: observation.size, lastSeen: now, bootID: bootID)
        entries[id] = Entry(state: state, phase: .following, rebooted: false, lastActivity: now)
        let start: ReadStart = !firstScanDone && configuration.startAt == .end && reason == .new ? .end : .position(.start)
        return [.read(id, path: observation.path, name: observation.path, from: start, window: nil, reason: reason)]
    }

    /// The file of `entry` holds other bytes than were read: remember the old content, read again from 0.
    /// The caller stores the entry, saves its state and then releases its copies.
    private mutating func truncate(_ entry: inout Entry, fingerprint: [UInt8], now: Int64) -> [Action] {
        let id = entry.state.id
        if entry.state.position.offset > 0 {
            departedSerial += 1
            departed.append(Departed(serial: departedSerial, from: id, fingerprint: entry.state.fingerprint, position: entry.state.position,
                                     window: entry.state.window, name: entry.state.name, since: now))
        }
        let at = entry.state.position.offset
        entry.state.position = .start
        entry.state.window = []
        entry.state.fingerprint = fingerprint
        entry.state.bootID = bootID
        entry.rebooted = false
        return [.read(id, path: entry.state.path, name: entry.state.name, from: .position(.start), window: nil, reason: .truncated(at: at))]
    }

    /// A presumed copy that is not one: its own file, read from 0 under its own name.
    private mutating func restartAsNew(_ entry: inout Entry, reason: Reason) -> [Action] {
        entry.state.presumedCopy = false
        entry.state.position = .start
        entry.state.window = []
        entry.state.name = entry.state.path
        entries[entry.state.id] = entry
        return [.read(entry.state.id, path: entry.state.path, name: entry.state.name, from: .position(.start), window: nil, reason: reason),
                .save(entry.state)]
    }

    /// Copies of `id` are decided again now that `id`'s content left it (truncated or gone).
    private mutating func releaseCopies(of id: FileID, now: Int64, probe: some FileContentProbe) -> [Action] {
        var actions: [Action] = []
        for copyID in entries.keys.sorted() {
            guard let entry = entries[copyID], entry.phase == .copy(of: id), let observation = entry.observation else { continue }
            entries[copyID] = nil
            actions += classify(observation, now: now, probe: probe)
        }
        return actions
    }

    /// Truncations' old content and gone files, oldest first.
    private func departedContents() -> [Departed] {
        let gone = entries.values.filter { $0.phase == .gone }.sorted { $0.state.id < $1.state.id }.map {
            Departed(serial: 0, from: $0.state.id, fingerprint: $0.state.fingerprint, position: $0.state.position, window: $0.state.window,
                     name: $0.state.name, since: $0.goneAt ?? $0.state.lastSeen)
        }
        return departed + gone
    }

    private mutating func prune(now: Int64) -> [Action] {
        var actions: [Action] = []
        for id in entries.keys.sorted() {
            guard let entry = entries[id], entry.phase == .gone, now - entry.state.lastSeen >= configuration.forgetAfter else { continue }
            entries[id] = nil
            actions.append(.delete(id))
        }
        departed.removeAll { now - $0.since >= configuration.forgetAfter }
        return actions
    }

    /// Two fingerprints match when the shorter is a prefix of the longer (a small file's fingerprint grows).
    package static func compatible(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count <= b.count ? b.starts(with: a) : a.starts(with: b)
    }
}

extension FileTracker.Entry {
    var isCopy: Bool {
        if case .copy = phase { return true }
        return false
    }
}

