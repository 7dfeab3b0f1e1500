#if canImport(Glibc)
import Glibc
#endif
@testable import FerryFile
import FerryTestSupport
import Testing

/// The whole input on real files in a temporary directory, with the sink in memory. Restarts are a new
/// input over the positions the previous one stored.
@Suite(.timeLimit(.minutes(2))) struct FileInputTests {
    @Test func linesAreStoredWithTheFileAndThePositionAfterThem() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "one\ntwo\n")
        let sink = MemorySink()
        try await running(try makeInput([dir.appending("*.log")], sink: sink)) {
            try await expectEventually("two lines") { sink.messages == ["one", "two"] }
            write(path, "three\npart")
            try await expectEventually("three lines") { sink.messages == ["one", "two", "three"] }
            try await expectEventually("position after three") { sink.states.first?.position == FilePosition(offset: 14) }
            write(path, "ial\n")
            try await expectEventually("the partial line, whole") { sink.messages.last == "partial" }
        }
        #expect(sink.stored.events.first == "{\"message\":\"one\",\"file\":\"\(path)\"}")
        #expect(sink.states.count == 1)
        #expect(sink.states.first?.position == FilePosition(offset: 22))
    }

    @Test func aRestartResumesAtTheStoredPosition() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "a\nb\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("first lines") { sink.messages == ["a", "b"] }
        }
        write(path, "c\nd\n")
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("only the new lines") { sink.messages == ["a", "b", "c", "d"] }
        }
        #expect(sink.messages == ["a", "b", "c", "d"])
    }

    @Test func renameRotationWithAGlobMatchingTheRotatedFilesReadsEachLineOnce() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "1\n2\n")
        let sink = MemorySink()
        try await running(try makeInput([dir.appending("app.log*")], sink: sink)) {
            try await expectEventually("before the rotation") { sink.messages == ["1", "2"] }
            rename(path, dir.appending("app.log.1"))
            // The writer still holds the old file for a moment, then opens a new one.
            write(dir.appending("app.log.1"), "3\n")
            write(path, "4\n", append: false)
            try await expectEventually("every line once") { Set(sink.messages) == ["1", "2", "3", "4"] }
            // Another rotation: .1 becomes .2, the current one .1.
            rename(dir.appending("app.log.1"), dir.appending("app.log.2"))
            rename(path, dir.appending("app.log.1"))
            write(path, "5\n", append: false)
            try await expectEventually("after the second rotation") { Set(sink.messages).count == 5 }
            // A rescan sees all three names; nothing is read again.
            try await Task.sleep(for: .milliseconds(1500))  // longer than the rescan interval: the check needs a rescan to have happened
        }
        #expect(sink.messages.sorted() == ["1", "2", "3", "4", "5"])
        let names = Set(sink.stored.events.map { $0.contains("\"file\":\"\(path)\"") })
        #expect(names == [true], "every event carries the name the file was first followed under")
    }

    @Test func copytruncateWithTheCopyInTheGlobReadsEachLineOnce() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "1\n2\n3\n")
        let sink = MemorySink()
        let logs = RecordingLogHandler.Store()
        try await running(try makeInput([dir.appending("app.log*")], sink: sink, logs: logs)) {
            try await expectEventually("before the rotation") { sink.messages == ["1", "2", "3"] }
            copy(path, dir.appending("app.log.1"))
            truncate(path)
            write(path, "4\n")
            try await expectEventually("the line after the truncation") { sink.messages.contains("4") }
            try await Task.sleep(for: .milliseconds(1500))  // a rescan must have seen the copy and the truncated file
        }
        #expect(sink.messages == ["1", "2", "3", "4"])
        #expect(logs.all.contains { $0.message.contains("truncated") })
    }

    @Test func aDeletedFileIsReadToItsEndThroughItsDescriptor() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "before\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("the first line") { sink.messages == ["before"] }
            sink.close()  // hold the input back so that the delete comes before the read
            write(path, "after 1\n")
            try await expectEventually("an append waiting") { sink.stored.waiting == 1 || sink.stored.appends > 1 }
            write(path, "after 2\n")
            remove(path)
            sink.open()
            try await expectEventually("the lines written before the delete") { sink.messages == ["before", "after 1", "after 2"] }
            try await expectEventually("the state kept as gone") { sink.states.first?.gone == true }
        }
    }

    @Test func deleteAndRecreateReadsTheNewFileWhole() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "old 1\nold 2\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("the old file") { sink.messages == ["old 1", "old 2"] }
            remove(path)
            // The kernel often gives the freed inode to the next file: either way it is another file.
            write(path, "new 1\n")
            try await expectEventually("the new file") { sink.messages == ["old 1", "old 2", "new 1"] }
        }
    }

    @Test func aFileDeletedWhileFerryWasDownIsReportedWithItsUnreadBytes() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "read\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("read") { sink.messages == ["read"] }
        }
        remove(path)
        let logs = RecordingLogHandler.Store()
        try await running(try makeInput([path], sink: sink, logs: logs)) {
            try await expectEventually("reported") { logs.all.contains { $0.message.contains("vanished while Ferry was down") } }
            try await expectEventually("kept as gone") { sink.states.first?.gone == true }
        }
    }

    @Test func aFileRegrowingPastItsOldSizeAfterATruncationWhileDownIsReadAgain() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        // A header longer than the fingerprint: both generations start alike, only the bytes before the old
        // position tell them apart.
        let header = (0..<20).map { "# header line \($0) of a log that starts like every other one\n" }.joined()
        write(path, header + "gen 1\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("read") { sink.messages.last == "gen 1" }
        }
        // Truncated in place, then written past the old position while Ferry was down.
        write(path, header + "gen 2, a longer line\ngen 2 again\n", append: false)
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("the new content whole") { sink.messages.last == "gen 2 again" }
        }
        #expect(sink.messages.count == 2 * 20 + 3)
        #expect(sink.messages.filter { $0.hasPrefix("gen") } == ["gen 1", "gen 2, a longer line", "gen 2 again"])
    }

    @Test func aLineCutByMaxLineBytesStaysCutAcrossARestartInTheMiddle() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "short\n" + String(repeating: "x", count: 100))
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink, configure: { $0.maxLineBytes = 40 })) {
            try await expectEventually("the cut line") { sink.messages == ["short", String(repeating: "x", count: 40)] }
            try await expectEventually("position in the skip") { sink.states.first?.position == FilePosition(offset: 106, skipping: true) }
        }
        write(path, String(repeating: "y", count: 30) + "\nnext\n")
        try await running(try makeInput([path], sink: sink, configure: { $0.maxLineBytes = 40 })) {
            try await expectEventually("the next line") { sink.messages.last == "next" }
        }
        #expect(sink.messages == ["short", String(repeating: "x", count: 40), "next"])
    }

    @Test func aNulFilledTailIsSkippedAndTheWriterGoesOnAfterIt() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, Array("synced\n".utf8) + [UInt8](repeating: 0, count: 8192))
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink)) {
            try await expectEventually("past the NULs") { sink.states.first?.position.offset == 7 + 8192 }
            write(path, "after the reboot\n")
            try await expectEventually("the next line") { sink.messages == ["synced", "after the reboot"] }
        }
    }

    @Test func multilineJavaStackTracesAreOneEventEach() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, javaLog)
        let sink = MemorySink()
        let input = try makeInput([path], sink: sink) {
            $0.multiline = .init(startPattern: #"^\d{4}-\d{2}-\d{2} "#, flushTimeout: .milliseconds(200))
        }
        try await running(input) {
            try await expectEventually("four events, the last after the flush timeout") { sink.messages.count == 4 }
        }
        #expect(sink.messages[1].hasSuffix("\t... 12 more"))
        #expect(sink.messages[1].contains("\nCaused by: java.net.SocketTimeoutException: Read timed out\n"))
    }

    @Test func aFullQueuePausesReadingAndNothingIsSkipped() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.log")
        write(path, "0\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink, configure: { $0.appendBytes = 64 })) {
            try await expectEventually("the first line") { sink.messages == ["0"] }
            sink.close()
            for n in 1...200 { write(path, "\(n)\n") }
            try await expectEventually("an append waiting") { sink.stored.waiting == 1 }
            let appendsWhileFull = sink.stored.appends
            // While the append waits nothing else is read or appended.
            try await Task.sleep(for: .milliseconds(300))  // a window in which a misbehaving input would append again
            #expect(sink.stored.appends == appendsWhileFull && sink.stored.waiting == 1)
            sink.open()
            try await expectEventually("every line once") { sink.messages == (0...200).map(String.init) }
        }
    }

    @Test func jsonLinesAreKeptAndOthersWrapped() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        let path = dir.appending("app.json")
        write(path, "{\"level\":\"info\"}\nnot json\n")
        let sink = MemorySink()
        try await running(try makeInput([path], sink: sink, configure: { $0.format = .json })) {
            try await expectEventually("two events") { sink.stored.events.count == 2 }
        }
        #expect(sink.stored.events == ["{\"file\":\"\(path)\",\"level\":\"info\"}", "{\"message\":\"not json\",\"file\":\"\(path)\"}"])
    }

    @Test func excludedPathsAreNotFollowed() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        write(dir.appending("app.log"), "kept\n")
        write(dir.appending("app.log.gz"), "not text\n")
        let sink = MemorySink()
        try await running(try makeInput([dir.appending("app.log*")], sink: sink, configure: { $0.exclude = [dir.appending("*.gz")] })) {
            try await expectEventually("the kept file") { sink.messages == ["kept"] }
            write(dir.appending("new.log.gz"), "still not\n")
            write(dir.appending("app.log.1"), "rotated\n")
            try await expectEventually("the new match") { sink.messages == ["kept", "rotated"] }
        }
        #expect(sink.messages == ["kept", "rotated"])
    }

    @Test(.tags(.long)) func athousandFilesAreFollowedWithOneWatch() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file")
        defer { dir.remove() }
        for n in 0..<1000 { write(dir.appending("f\(n).log"), "file \(n) line 0\n") }
        let sink = MemorySink()
        try await running(try makeInput([dir.appending("*.log")], sink: sink)) {
            try await expectEventually("a line of each") { sink.stored.events.count == 1000 }
            for n in stride(from: 0, to: 1000, by: 37) { write(dir.appending("f\(n).log"), "file \(n) line 1\n") }
            try await expectEventually("the appended lines") { sink.stored.events.count == 1000 + 28 }
        }
        #expect(Set(sink.messages).count == 1028)
        #expect(sink.states.count == 1000)
    }
}

extension Tag {
    @Tag static var long: Self
}
