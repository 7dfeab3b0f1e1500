@testable import FerryFile
import Testing

/// Files in memory: paths to inodes, inodes to bytes. The tracker's probe, and the maker of observations.
final class FakeDisk: FileContentProbe {
    var paths: [String: FileID] = [:]
    var contents: [FileID: [UInt8]] = [:]
    private var nextInode: UInt64 = 100

    @discardableResult
    func create(_ path: String, _ text: String = "", inode: UInt64? = nil, device: UInt64 = 1) -> FileID {
        let id = FileID(device: device, inode: inode ?? { nextInode += 1; return nextInode }())
        paths[path] = id
        contents[id] = Array(text.utf8)
        return id
    }

    func append(_ path: String, _ text: String) { contents[paths[path]!]! += Array(text.utf8) }
    func truncate(_ path: String) { contents[paths[path]!] = [] }
    func rename(_ from: String, _ to: String) { paths[to] = paths.removeValue(forKey: from) }
    func delete(_ path: String) { paths[path] = nil }
    func copy(_ from: String, _ to: String) -> FileID { create(to, String(decoding: contents[paths[from]!]!, as: UTF8.self)) }

    func observe(_ path: String, inGlob: Bool = true) -> FileObservation {
        let id = paths[path]!
        let bytes = contents[id]!
        return FileObservation(path: path, id: id, size: Int64(bytes.count), fingerprint: Array(bytes.prefix(FileState.fingerprintBytes)), inGlob: inGlob)
    }

    func size(_ path: String) -> Int64 { Int64(contents[paths[path]!]!.count) }

    func bytes(of id: FileID, path: String, at offset: Int64, count: Int) -> [UInt8]? {
        guard paths[path] == id, let bytes = contents[id], offset >= 0, Int(offset) + count <= bytes.count else { return nil }
        return Array(bytes[Int(offset)..<(Int(offset) + count)])
    }
}

/// A tracker plus the disk it looks at; `readAll` plays the reader: reads a file to its end and commits.
struct Harness {
    var tracker: FileTracker
    let disk: FakeDisk
    var now: Int64 = 1_000_000

    init(disk: FakeDisk = FakeDisk(), boot: String = "boot-1", restored: [FileState] = [], startAt: FileInputConfiguration.StartAt = .beginning) {
        self.disk = disk
        tracker = FileTracker(configuration: .init(startAt: startAt, forgetAfter: 3_600_000, drainIdle: 10_000), bootID: boot, restored: restored, now: now)
    }

    mutating func scan(_ paths: [String]) -> [FileTracker.Action] {
        tracker.scanned(paths.map { disk.observe($0) }, now: now, probe: disk)
    }

    mutating func observe(_ path: String, inGlob: Bool = true) -> [FileTracker.Action] {
        tracker.observed(disk.observe(path, inGlob: inGlob), now: now, probe: disk)
    }

    /// Reads file `id` up to `offset` (default: its end) and commits that position.
    mutating func commit(_ id: FileID, to offset: Int64? = nil) {
        let bytes = disk.contents[id]!
        let end = offset ?? Int64(bytes.count)
        let window = Array(bytes[max(0, Int(end) - 64)..<Int(end)])
        let state = tracker.progressed(id, to: FilePosition(offset: end), window: window, fingerprint: Array(bytes.prefix(1024)), now: now)!
        tracker.committed(state, now: now)
    }
}

/// The `.read` actions of `actions`, as (id, start, reason).
func reads(_ actions: [FileTracker.Action]) -> [(FileID, FileTracker.ReadStart, FileTracker.Reason)] {
    actions.compactMap {
        if case let .read(id, _, _, from, _, reason) = $0 { return (id, from, reason) }
        return nil
    }
}

func at(_ offset: Int64) -> FileTracker.ReadStart { .position(FilePosition(offset: offset)) }

@Suite struct FileTrackerTests {
    @Test func newFilesAreReadFromTheStartAndStartAtEndAppliesToTheFirstScanOnly() {
        var h = Harness(startAt: .end)
        let old = h.disk.create("/l/old.log", "already there\n")
        let first = reads(h.scan(["/l/old.log"]))
        #expect(first.count == 1 && first[0].0 == old && first[0].1 == .end && first[0].2 == .new)
        let later = h.disk.create("/l/new.log", "written after the start\n")
        let second = reads(h.observe("/l/new.log"))
        #expect(second.count == 1 && second[0].0 == later && second[0].1 == at(0))
    }

    @Test func anEmptyNewFileWaitsUntilItHasBytes() {
        var h = Harness()
        let id = h.disk.create("/l/a.log")
        #expect(h.observe("/l/a.log").isEmpty)
        h.disk.append("/l/a.log", "x\n")
        #expect(reads(h.observe("/l/a.log")).map(\.0) == [id])
    }

    @Test func aStoredPositionIsResumedWithItsWindowChecked() {
        let disk = FakeDisk()
        let id = disk.create("/l/a.log", "one\ntwo\nthree\n")
        let stored = FileState(id: id, fingerprint: Array("one\ntwo\nthree\n".utf8), position: FilePosition(offset: 8), window: Array("one\ntwo\n".utf8),
                               name: "/l/a.log", path: "/l/a.log", size: 14, lastSeen: 0, bootID: "boot-1")
        var h = Harness(disk: disk, restored: [stored])
        let actions = h.scan(["/l/a.log"])
        #expect(actions.contains(.read(id, path: "/l/a.log", name: "/l/a.log", from: at(8), window: Array("one\ntwo\n".utf8), reason: .resumed)))
    }

    @Test func aRenamedFileIsTheSameFileAndIsNeverReadTwiceWhenTheGlobMatchesTheRotatedName() {
        var h = Harness()
        let old = h.disk.create("/l/app.log", "line 1\nline 2\n")
        _ = h.scan(["/l/app.log"])
        h.commit(old)
        // logrotate: rename, then a new file under the old name.
        h.disk.rename("/l/app.log", "/l/app.log.1")
        let removed = h.tracker.pathRemoved("/l/app.log", now: h.now)
        #expect(removed == [.drain(old)])
        let moved = h.observe("/l/app.log.1")
        #expect(reads(moved).isEmpty)
        #expect(moved.contains(.follow(old)))
        #expect(h.tracker.state(of: old)?.path == "/l/app.log.1")
        #expect(h.tracker.state(of: old)?.name == "/l/app.log")
        let new = h.disk.create("/l/app.log", "line 3\n")
        #expect(reads(h.observe("/l/app.log")).map(\.0) == [new])
        // A full scan sees both names: still one reader each, no new read.
        #expect(reads(h.scan(["/l/app.log", "/l/app.log.1"])).isEmpty)
    }

    @Test func aFileRenamedOutOfTheGlobsIsDrainedThenStoppedWhenIdle() {
        var h = Harness()
        let id = h.disk.create("/l/app.log", "a\n")
        _ = h.scan(["/l/app.log"])
        h.commit(id)
        h.disk.rename("/l/app.log", "/l/app.log.1")
        _ = h.tracker.pathRemoved("/l/app.log", now: h.now)
        #expect(!h.observe("/l/app.log.1", inGlob: false).contains(.follow(id)))
        h.now += 9_999
        #expect(h.tracker.tick(now: h.now).isEmpty)
        h.now += 1
        let stop = h.tracker.tick(now: h.now)
        #expect(stop.first == .stop(id))
        #expect(h.tracker.state(of: id)?.gone == true)
    }

    @Test func aDeletedFileIsReadToItsEndThenKeptAsGoneAndPruned() {
        var h = Harness()
        let id = h.disk.create("/l/app.log", "a\n")
        _ = h.scan(["/l/app.log"])
        h.commit(id)
        h.disk.delete("/l/app.log")
        #expect(h.tracker.pathRemoved("/l/app.log", now: h.now) == [.drain(id)])
        h.now += 10_000
        #expect(h.tracker.tick(now: h.now).first == .stop(id))
        h.now += 3_600_000
        #expect(h.tracker.tick(now: h.now) == [.delete(id)])
        #expect(h.tracker.state(of: id) == nil)
    }

    @Test func aSizeBelowThePositionIsATruncation() {
        var h = Harness()
        let id = h.disk.create("/l/app.log", "first run of lines\n")
        _ = h.scan(["/l/app.log"])
        h.commit(id)
        h.disk.truncate("/l/app.log")
        h.disk.append("/l/app.log", "new\n")
        let actions = h.observe("/l/app.log")
        #expect(reads(actions).map(\.2) == [.truncated(at: 19)])
        #expect(reads(actions).map(\.1) == [at(0)])
        #expect(h.tracker.state(of: id)?.position == .start)
    }

    @Test func otherBytesBeforeThePositionAreATruncationToo() {
        var h = Harness()
        let id = h.disk.create("/l/app.log", "aaaa\nbbbb\n")
        _ = h.scan(["/l/app.log"])
        h.commit(id)
        // Truncated and written again past the old position before Ferry looked: the reader finds it.
        let actions = h.tracker.contentChanged(id, size: 30, now: h.now, probe: h.disk)
        #expect(reads(actions).map(\.2) == [.truncated(at: 10)])
    }

    @Test func copytruncateWithTheCopyInTheGlobContinuesTheCopyFromThePosition() {
        var h = Harness()
        let original = h.disk.create("/l/app.log", "one\ntwo\nthree\n")
        _ = h.scan(["/l/app.log"])
        h.commit(original, to: 8)  // "three" not read yet when the copy is made
        let copy = h.disk.copy("/l/app.log", "/l/app.log.1")
        // While the original holds the content, the copy is not read at all.
        #expect(h.observe("/l/app.log.1").isEmpty)
        #expect(h.tracker.isUnreadCopy(copy))
        h.disk.truncate("/l/app.log")
        let actions = h.observe("/l/app.log")
        let started = reads(actions)
        #expect(started.count == 2)
        #expect(started[0].0 == original && started[0].1 == at(0) && started[0].2 == .truncated(at: 8))
        // The copy goes on where the original was: "three" is read from the copy, nothing twice.
        #expect(started[1].0 == copy && started[1].1 == at(8) && started[1].2 == .copy(of: original))
        #expect(h.tracker.state(of: copy)?.name == "/l/app.log")
    }

    @Test func aCopyShorterThanWhatWasReadIsPresumedAndReadOnlyPastThePosition() {
        var h = Harness()
        let original = h.disk.create("/l/app.log", "one\ntwo\n")
        _ = h.scan(["/l/app.log"])
        let copy = h.disk.copy("/l/app.log", "/l/app.log.1")
        #expect(h.observe("/l/app.log.1").isEmpty)
        // The writer adds a line after the copy ended; Ferry reads it from the original; then the truncate.
        h.disk.append("/l/app.log", "three\n")
        h.commit(original)
        h.disk.truncate("/l/app.log")
        let started = reads(h.observe("/l/app.log"))
        #expect(started.last.map { $0.0 == copy && $0.1 == at(14) } == true)
        #expect(h.tracker.state(of: copy)?.presumedCopy == true)
        // Shorter than the position: not a truncation, nothing to do.
        #expect(h.tracker.contentChanged(copy, size: 8, now: h.now, probe: h.disk).isEmpty)
    }

    @Test func aCopyFoundAfterTheTruncationIsCheckedByTheBytesBeforeThePosition() {
        var h = Harness()
        let original = h.disk.create("/l/app.log", "one\ntwo\n")
        _ = h.scan(["/l/app.log"])
        h.commit(original)
        // Copied and truncated between two looks; the truncation is seen first (known files go first).
        let copy = h.disk.copy("/l/app.log", "/l/app.log.1")
        h.disk.truncate("/l/app.log")
        let started = reads(h.scan(["/l/app.log", "/l/app.log.1"]))
        #expect(started.count == 2)
        #expect(started[1].0 == copy && started[1].1 == at(8) && started[1].2 == .copy(of: original))
    }

    @Test func filesWithACommonHeaderAreToldApartByInode() {
        var h = Harness()
        let header = String(repeating: "# timestamp,level,message (a CSV header longer than the fingerprint)\n", count: 20)
        let a = h.disk.create("/l/a.csv", header + "1,info,a\n")
        _ = h.scan(["/l/a.csv"])
        h.commit(a)
        let b = h.disk.create("/l/b.csv", header + "2,warn,b\n")
        #expect(reads(h.observe("/l/b.csv")).map { [$0.0 == b, $0.1 == at(0)] } == [[true, true]])
        #expect(h.tracker.state(of: a)?.position.offset == Int64(header.utf8.count + 9))
    }

    @Test func inodeReuseAfterADeleteIsANewFile() {
        var h = Harness()
        let id = h.disk.create("/l/app.log", "old content\n")
        _ = h.scan(["/l/app.log"])
        h.commit(id)
        h.disk.delete("/l/app.log")
        _ = h.tracker.pathRemoved("/l/app.log", now: h.now)
        h.now += 10_000
        _ = h.tracker.tick(now: h.now)
        // The kernel gives the freed inode to the next file.
        h.disk.create("/l/app.log", "brand new file, longer than the old one\n", inode: id.inode)
        let actions = h.observe("/l/app.log")
        #expect(actions.first == .delete(id))
        #expect(reads(actions).map { [$0.1 == at(0), $0.2 == .replaced] } == [[true, true]])
    }

    @Test func afterAPowerCutAShorterFileResumesAtItsNewEndAndIsNotReadAgain() {
        let disk = FakeDisk()
        let id = disk.create("/l/app.log", "synced\n")
        let stored = FileState(id: id, fingerprint: Array("synced\n".utf8), position: FilePosition(offset: 20), window: [],
                               name: "/l/app.log", path: "/l/app.log", size: 20, lastSeen: 0, bootID: "boot-before-the-cut")
        var h = Harness(disk: disk, boot: "boot-after-the-cut", restored: [stored])
        let actions = h.scan(["/l/app.log"])
        #expect(reads(actions).map { [$0.1 == at(7), $0.2 == .powerLoss(lostBytes: 13)] } == [[true, true]])
        // The same picture without a reboot is a truncation.
        var same = Harness(disk: disk, boot: "boot-before-the-cut", restored: [stored])
        #expect(reads(same.scan(["/l/app.log"])).map(\.2) == [.truncated(at: 20)])
    }

    @Test func afterAPowerCutOtherBytesBeforeThePositionAreNotATruncation() {
        let disk = FakeDisk()
        let id = disk.create("/l/app.log", "line\n" + String(repeating: "\u{0}", count: 30))
        let stored = FileState(id: id, fingerprint: Array("line\n".utf8), position: FilePosition(offset: 35), window: Array("lost tail\n".utf8),
                               name: "/l/app.log", path: "/l/app.log", size: 35, lastSeen: 0, bootID: "old")
        var h = Harness(disk: disk, boot: "new", restored: [stored])
        _ = h.scan(["/l/app.log"])
        let actions = h.tracker.contentChanged(id, size: 35, now: h.now, probe: disk)
        #expect(reads(actions).map { [$0.1 == at(35), $0.2 == .powerLoss(lostBytes: 0)] } == [[true, true]])
    }

    @Test func aConfirmedFileTakesThisBootsIdSoALaterShrinkIsATruncation() {
        let disk = FakeDisk()
        let id = disk.create("/l/app.log", "abc\n")
        let stored = FileState(id: id, fingerprint: Array("abc\n".utf8), position: FilePosition(offset: 4), window: Array("abc\n".utf8),
                               name: "/l/app.log", path: "/l/app.log", size: 4, lastSeen: 0, bootID: "old")
        var h = Harness(disk: disk, boot: "new", restored: [stored])
        _ = h.scan(["/l/app.log"])
        let saved = h.tracker.confirmed(id)
        #expect(saved.count == 1)
        guard case .save(let state) = saved[0] else { Issue.record("expected a save"); return }
        #expect(state.bootID == "new")
        disk.truncate("/l/app.log")
        #expect(reads(h.observe("/l/app.log")).map(\.2) == [.truncated(at: 4)])
    }

    @Test func aFileThatVanishedWhileFerryWasDownIsReportedWithItsUnreadBytes() {
        let stored = FileState(id: FileID(device: 1, inode: 9), fingerprint: [1], position: FilePosition(offset: 100), window: [],
                               name: "/l/gone.log", path: "/l/gone.log", size: 250, lastSeen: 0, bootID: "boot-1")
        var h = Harness(restored: [stored])
        let actions = h.scan([])
        var gone = stored
        gone.gone = true
        #expect(actions == [.vanished(gone, unreadAtLeast: 150), .save(gone)])
        // Reported once: a gone state stays quiet until it comes back or is pruned.
        #expect(h.scan([]).isEmpty)
    }

    @Test func aGlobRemovedAndAddedBackResumesWhereItWas() {
        let disk = FakeDisk()
        let id = disk.create("/l/app.log", "0123456789\n")
        let stored = FileState(id: id, fingerprint: Array("0123456789\n".utf8), position: FilePosition(offset: 11), window: Array("0123456789\n".utf8),
                               name: "/l/app.log", path: "/l/app.log", size: 11, lastSeen: 0, bootID: "boot-1", gone: true)
        var h = Harness(disk: disk, restored: [stored])
        let actions = h.scan(["/l/app.log"])
        #expect(reads(actions).map { [$0.0 == id, $0.1 == at(11), $0.2 == .resumed] } == [[true, true, true]])
    }

    @Test func aDeviceRenumberedByAReebootKeepsTheFile() {
        let disk = FakeDisk()
        let stored = FileState(id: FileID(device: 7, inode: 55), fingerprint: Array("abc\n".utf8), position: FilePosition(offset: 4), window: Array("abc\n".utf8),
                               name: "/l/app.log", path: "/l/app.log", size: 4, lastSeen: 0, bootID: "old")
        let now = disk.create("/l/app.log", "abc\ndef\n", inode: 55, device: 9)
        var h = Harness(disk: disk, boot: "new", restored: [stored])
        let actions = h.scan(["/l/app.log"])
        #expect(actions.first == .delete(FileID(device: 7, inode: 55)))
        #expect(reads(actions).map { [$0.0 == now, $0.1 == at(4), $0.2 == .resumed] } == [[true, true, true]])
    }

    @Test func aSmallFilesFingerprintGrowsAndStillMatches() {
        var h = Harness()
        let id = h.disk.create("/l/small.log", "hi\n")
        _ = h.scan(["/l/small.log"])
        h.commit(id)
        h.disk.append("/l/small.log", String(repeating: "more\n", count: 300))
        #expect(reads(h.observe("/l/small.log")).isEmpty)
        h.commit(id)
        #expect(h.tracker.state(of: id)?.fingerprint.count == 1024)
    }

    @Test func aPresumedCopyThatDiffersIsReadFromItsStart() {
        var h = Harness()
        let original = h.disk.create("/l/app.log", "same start\nthen one thing\n")
        _ = h.scan(["/l/app.log"])
        h.commit(original)
        h.disk.truncate("/l/app.log")
        _ = h.observe("/l/app.log")
        // A new file starting like the old content, shorter than its position: presumed a copy.
        let other = h.disk.create("/l/other.log", "same start\n")
        #expect(reads(h.observe("/l/other.log")).map(\.1) == [at(26)])
        // It grows with other bytes: not a copy; read whole, under its own name.
        h.disk.append("/l/other.log", "and then something else\n")
        let actions = h.observe("/l/other.log")
        #expect(reads(actions).map { [$0.0 == other, $0.1 == at(0), $0.2 == .notACopy] } == [[true, true, true]])
        #expect(h.tracker.state(of: other)?.name == "/l/other.log")
    }

    @Test func oldDepartedContentNeedsTheBytesBeforeItsPositionToClaimACopy() {
        var h = Harness()
        let original = h.disk.create("/l/app.log", "same start\nthen one thing\n")
        _ = h.scan(["/l/app.log"])
        h.commit(original)
        h.disk.truncate("/l/app.log")
        _ = h.observe("/l/app.log")
        h.now += FileTracker.recentDeparture + 1
        let other = h.disk.create("/l/other.log", "same start\n")
        #expect(reads(h.observe("/l/other.log")).map { [$0.0 == other, $0.1 == at(0), $0.2 == .new] } == [[true, true, true]])
    }
}
