#if canImport(Glibc)
import Glibc
#endif
@testable import FerryFile
import FerryTestSupport
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct WatchingTests {
    @Test func inotifyReportsCreatesWritesMovesAndDeletesByPath() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-watch")
        defer { dir.remove() }
        let watcher = try DirectoryWatcher()
        #expect(watcher.watch(dir.path))
        let seen = Mutex<[DirectoryWatcher.Event]>([])
        watcher.start { events in seen.withLock { $0 += events } }
        let a = dir.appending("a.log")
        write(a, "x\n")
        rename(a, dir.appending("b.log"))
        remove(dir.appending("b.log"))
        try await expectEventually("all four kinds") {
            let events = seen.withLock { $0 }
            return events.contains(.appeared(a)) && events.contains(.modified(a)) && events.contains(.removed(a))
                && events.contains(.appeared(dir.appending("b.log"))) && events.contains(.removed(dir.appending("b.log")))
        }
        await watcher.stop()
    }

    @Test func aWatchedDirectoryThatGoesAwayAsksForARescan() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-watch")
        defer { dir.remove() }
        let sub = dir.appending("sub")
        #expect(mkdir(sub, 0o755) == 0)
        let watcher = try DirectoryWatcher()
        #expect(watcher.watch(sub))
        let seen = Mutex<[DirectoryWatcher.Event]>([])
        watcher.start { events in seen.withLock { $0 += events } }
        #expect(rmdir(sub) == 0)
        try await expectEventually("an overflow") { seen.withLock { $0.contains(.overflow) } }
        #expect(watcher.watchedDirectories.isEmpty)
        await watcher.stop()
    }

    @Test func globsMatchExcludeAndNameTheDirectoriesToWatch() throws {
        let dir = try TemporaryDirectory(prefix: "ferry-glob")
        defer { dir.remove() }
        for name in ["a", "b"] { #expect(mkdir(dir.appending(name), 0o755) == 0) }
        for path in ["a/x.log", "a/x.log.1", "a/x.log.2.gz", "b/y.log", "top.log"] { write(dir.appending(path), "") }
        let globs = Globs(paths: [dir.appending("*/*.log*"), dir.appending("top.log")], exclude: [dir.appending("*/*.gz")])
        #expect(globs.scan() == ["a/x.log", "a/x.log.1", "b/y.log", "top.log"].map(dir.appending))
        #expect(globs.matches(dir.appending("b/new.log")))
        #expect(!globs.matches(dir.appending("b/new.log.gz")))
        #expect(!globs.matches(dir.appending("b/deeper/z.log")))
        #expect(globs.directories() == [dir.path, dir.appending("a"), dir.appending("b")])
    }

    @Test func theBootIDIsReadFromTheKernel() {
        let id = FileSystem.bootID()
        #expect(id.count == 36)
        #expect(id == FileSystem.bootID())
    }

    @Test func theWakeSignalIsKeptForTheNextWaitAndTheTimeoutEndsAWait() async {
        let wake = WakeSignal()
        wake.signal()
        await wake.wait(timeout: nil)  // returns at once: the signal was kept
        let start = ContinuousClock.now
        await wake.wait(timeout: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
    }
}
