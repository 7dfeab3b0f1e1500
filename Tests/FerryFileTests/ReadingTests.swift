@testable import FerryFile
import FerryWire
import Testing

/// Splits `text` fed in `chunks` (sizes, cycled) and returns the lines and the final consumed position.
private func split(_ bytes: [UInt8], maxLineBytes: Int = 100, chunks: [Int] = [1 << 20], from position: FilePosition = .start)
    -> (lines: [String], ends: [FilePosition], consumed: FilePosition, splitter: LineSplitter) {
    var splitter = LineSplitter(maxLineBytes: maxLineBytes, position: position)
    var lines: [String] = []
    var ends: [FilePosition] = []
    var index = 0
    var chunk = 0
    while index < bytes.count {
        let size = min(chunks[chunk % chunks.count], bytes.count - index)
        bytes[index..<(index + size)].withUnsafeBytes { raw in
            splitter.feed(raw) { line in
                lines.append(String(decoding: line.bytes, as: UTF8.self))
                // A cut line ends where its skip begins, which depends on the chunks: not compared.
                ends.append(line.truncated ? FilePosition(offset: -1) : line.end)
            }
        }
        index += size
        chunk += 1
    }
    return (lines, ends, splitter.consumed, splitter)
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct LineSplitterTests {
    @Test func completeLinesAreEmittedWithTheirEndPositions() {
        let result = split(bytes("one\ntwo\n\nthree\n"))
        #expect(result.lines == ["one", "two", "", "three"])
        #expect(result.ends.map(\.offset) == [4, 8, 9, 15])
        #expect(result.consumed == FilePosition(offset: 15))
    }

    @Test func aPartialLineWaitsForItsNewlineAndThePositionStaysAtItsStart() {
        var result = split(bytes("one\ntw"))
        #expect(result.lines == ["one"])
        #expect(result.consumed == FilePosition(offset: 4))
        var lines: [String] = []
        bytes("o\n").withUnsafeBytes { result.splitter.feed($0) { lines.append(String(decoding: $0.bytes, as: UTF8.self)) } }
        #expect(lines == ["two"])
        #expect(result.splitter.consumed == FilePosition(offset: 8))
    }

    @Test func everyChunkingGivesTheSameLines() {
        let text = bytes("alpha\r\nbeta\n\u{0}\u{0}gamma\nde\u{0}lta\n" + String(repeating: "x", count: 250) + "\nend\n")
        let whole = split(text)
        for size in [1, 2, 3, 7, 64, 101] {
            let chunked = split(text, chunks: [size])
            #expect(chunked.lines == whole.lines, "chunks of \(size)")
            #expect(chunked.ends == whole.ends, "chunks of \(size)")
            #expect(chunked.consumed == whole.consumed, "chunks of \(size)")
            #expect(chunked.splitter.nulBytes == whole.splitter.nulBytes)
        }
    }

    @Test func crlfEndsALineAndALoneCarriageReturnStays() {
        #expect(split(bytes("a\r\nb\rc\n")).lines == ["a", "b\rc"])
    }

    @Test func nulRunsAreSkippedAndCountedAndMoveThePositionWithoutANewline() {
        // A writer's power-cut tail: the size grew, the data never reached the disk.
        let result = split(bytes("kept\n") + [UInt8](repeating: 0, count: 4096))
        #expect(result.lines == ["kept"])
        #expect(result.consumed == FilePosition(offset: 5 + 4096))
        #expect(result.splitter.nulBytes == 4096)
        // After the reboot the writer appends behind the NULs.
        let resumed = split(bytes("\u{0}\u{0}next\n"), from: FilePosition(offset: 0))
        #expect(resumed.lines == ["next"])
        #expect(split(bytes("a\u{0}\u{0}b\n")).lines == ["ab"])
    }

    @Test func aLongLineIsCutSkippedToItsNewlineAndTheSkipIsPartOfThePosition() {
        let long = String(repeating: "a", count: 30) + String(repeating: "b", count: 20)
        let text = bytes(long + "\nnext\n")
        for size in [1, 5, 29, 31, 100] {
            let result = split(text, maxLineBytes: 30, chunks: [size])
            #expect(result.lines == [String(repeating: "a", count: 30), "next"], "chunks of \(size)")
            #expect(result.splitter.truncatedLines == 1)
            #expect(result.splitter.skippedBytes == 20)
        }
        // Fed only up to the middle of the tail: the position says "skipping".
        let middle = split(bytes(long), maxLineBytes: 30, chunks: [40])
        #expect(middle.lines == [String(repeating: "a", count: 30)])
        #expect(middle.consumed == FilePosition(offset: 50, skipping: true))
        // A restart there does not take the rest of the tail for a line.
        let restarted = split(bytes("bbbb\nnext\n"), maxLineBytes: 30, from: FilePosition(offset: 50, skipping: true))
        #expect(restarted.lines == ["next"])
    }

    @Test func aCutLineEndsOnAWholeCharacter() {
        // "é" is two bytes; the cut at 5 bytes would split the third one.
        let result = split(bytes("aéé\u{E9}x\n"), maxLineBytes: 4)
        #expect(result.lines == ["a\u{E9}"])
    }

    @Test func takePartialEmitsTheWaitingLine() {
        var splitter = LineSplitter(maxLineBytes: 100, position: .start)
        var lines: [String] = []
        bytes("done\nhalf").withUnsafeBytes { splitter.feed($0) { lines.append(String(decoding: $0.bytes, as: UTF8.self)) } }
        #expect(splitter.takePartial { lines.append(String(decoding: $0.bytes, as: UTF8.self)) })
        #expect(lines == ["done", "half"])
        #expect(splitter.consumed == FilePosition(offset: 9))
    }
}

@Suite struct EventEncoderTests {
    private func encode(_ lines: [String], format: FileFormat, file: String = "/var/log/app.log") -> (events: [String], encoder: EventEncoder) {
        var encoder = EventEncoder(format: format, file: file)
        var events = FileEvents()
        for line in lines { Array(line.utf8).withUnsafeBytes { encoder.encode($0, into: &events) } }
        return ((0..<events.count).map { String(decoding: events[$0].bytes, as: UTF8.self) }, encoder)
    }

    @Test func textLinesBecomeMessageEventsWithTheFile() {
        let result = encode(["plain", "quote \" back\\slash\ttab"], format: .text, file: "/logs/a \"b\".log")
        #expect(result.events == [#"{"message":"plain","file":"/logs/a \"b\".log"}"#,
                                  #"{"message":"quote \" back\\slash\ttab","file":"/logs/a \"b\".log"}"#])
        for event in result.events { #expect(throws: Never.self) { try Array(event.utf8).withUnsafeBytes { try JSONValidator.validateObject($0) } } }
    }

    @Test func invalidUTF8IsReplacedAndCounted() {
        var encoder = EventEncoder(format: .text, file: "f")
        var events = FileEvents()
        [UInt8(ascii: "a"), 0xFF, UInt8(ascii: "b")].withUnsafeBytes { encoder.encode($0, into: &events) }
        #expect(String(decoding: events[0].bytes, as: UTF8.self) == "{\"message\":\"a\u{FFFD}b\",\"file\":\"f\"}")
        #expect(encoder.repaired == 1)
    }

    @Test func jsonObjectsAreKeptWithTheFileAddedAndOthersWrappedAndCounted() {
        let result = encode([#"{"level":"info","n":1}"#, #"  {}  "#, #"{"file":"mine","x":[{"file":2}]}"#, "[1,2]", "not json"], format: .json, file: "f")
        #expect(result.events == [
            #"{"file":"f","level":"info","n":1}"#,
            #"  {"file":"f"}  "#,
            #"{"file":"mine","x":[{"file":2}]}"#,
            #"{"message":"[1,2]","file":"f"}"#,
            #"{"message":"not json","file":"f"}"#,
        ])
        #expect(result.encoder.wrapped == 2)
    }

    @Test func objectsFromTheFileAreMarkedForTheStampToCheckTheirKeys() {
        var encoder = EventEncoder(format: .json, file: "f")
        var events = FileEvents()
        for line in ["{}", "text"] { Array(line.utf8).withUnsafeBytes { encoder.encode($0, into: &events) } }
        #expect(events[0].kind == .object)
        #expect(events[1].kind == .built)
    }

    @Test func aNestedFileKeyIsNotTheEventsOwn() {
        let result = encode([#"{"inner":{"file":"x"},"s":"\"file\""}"#], format: .json, file: "f")
        #expect(result.events == [#"{"file":"f","inner":{"file":"x"},"s":"\"file\""}"#])
    }

    @Test func aMultilineJSONObjectIsCompactedToOneLine() {
        let result = encode(["{\n  \"a\": 1,\n  \"b\": \"x y\"\n}"], format: .json, file: "f")
        #expect(result.events == [#"{"file":"f","a":1,"b":"x y"}"#])
    }
}

@Suite struct StartPatternTests {
    private func matches(_ pattern: String, _ line: String) throws -> Bool {
        let compiled = try StartPattern(pattern)
        return Array(line.utf8).withUnsafeBytes { compiled.matches($0) }
    }

    @Test func matchesBytesInPlaceWithPOSIXExtendedSyntax() throws {
        #expect(try matches("^[0-9]{4}-[0-9]{2}", "2024-01-02 INFO x"))
        #expect(try !matches("^[0-9]{4}-[0-9]{2}", "\tat com.example.Main(Main.java:1)"))
        #expect(try matches("^\\d{4}-\\d\\d", "2024-01 x"))
        #expect(try !matches("^\\d", "d"))
        #expect(try matches("^[[:digit:]]+\\s", "12 x"))
        #expect(try matches("ERROR", "x ERROR y"))
        #expect(try !matches("^x", ""))
        #expect(try matches("^$", ""))
    }

    @Test func aLineIsBoundedByItsLengthNotByANul() throws {
        let compiled = try StartPattern("^abc$")
        let buffer = Array("abcdef".utf8)
        #expect(buffer.withUnsafeBytes { compiled.matches(UnsafeRawBufferPointer(rebasing: $0[..<3])) })
    }

    @Test func digitsShorthandIsRewrittenOutsideBracketsOnly() {
        #expect(StartPattern.translate(#"^\d+-\D"#) == "^[0-9]+-[^0-9]")
        #expect(StartPattern.translate(#"[\d]x\d"#) == #"[\d]x[0-9]"#)
        #expect(StartPattern.translate(#"[]\d][[:alpha:]\d]\d"#) == #"[]\d][[:alpha:]\d][0-9]"#)
        #expect(StartPattern.translate(#"\\d"#) == #"\\d"#)
    }

    @Test func anInvalidPatternIsRefusedWithItsReason() {
        #expect { try StartPattern("^(unclosed") } throws: { error in
            guard let error = error as? FileInputError else { return false }
            return error.code == .invalidPattern && error.message.contains("^(unclosed")
        }
    }
}
