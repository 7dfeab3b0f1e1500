#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FerryWire

/// How the lines of a file become events.
package enum FileFormat: String, Sendable, CaseIterable {
    /// Each line is `{"message": line}`.
    case text
    /// Each line that is a JSON object is kept as it is; any other line is wrapped as text and counted.
    case json
}

/// Turns a line (or a multiline event) into one JSON object event with the field `file`, without I/O.
///
/// - `text`: `{"message":"<line>","file":"<name>"}`, escaped by FerryWire's one escaper. Invalid UTF-8 is
///   replaced by U+FFFD and the event counted in `repaired`.
/// - `json`: a line holding one JSON object (checked by `JSONValidator`) is kept byte for byte, compacted to
///   one line if it spans several (a multiline event), with `"file":"<name>"` added first unless the object
///   has a top-level `file` of its own (the writer's field wins). Any other line is wrapped as text and
///   counted in `wrapped`.
package struct EventEncoder {
    package let format: FileFormat
    /// `"file":"<escaped name>"`, made once.
    private let fileField: [UInt8]
    /// Events whose invalid UTF-8 was replaced.
    package private(set) var repaired = 0
    /// `json` lines that were not a JSON object and were stored as text.
    package private(set) var wrapped = 0

    package init(format: FileFormat, file: String) {
        self.format = format
        var field = Array(#""file":""#.utf8)
        JSONString.appendEscaped(file.utf8, to: &field)
        field.append(UInt8(ascii: "\""))
        self.fileField = field
    }

    /// Adds the event made of `line` to `events`.
    package mutating func encode(_ line: UnsafeRawBufferPointer, into events: inout FileEvents) {
        if format == .json {
            if (try? JSONValidator.validateObject(line)) != nil {
                if let base = line.baseAddress,
                   memchr(base, 0x0A, line.count) != nil || memchr(base, 0x0D, line.count) != nil {
                    let compact = JSONValidator.compact(line)
                    compact.withUnsafeBytes { addingFile(to: $0, into: &events) }
                } else {
                    addingFile(to: line, into: &events)
                }
                return
            }
            wrapped += 1
        }
        if UTF8Validation.firstInvalidOffset(line) == nil {
            addText(line, into: &events)
        } else {
            repaired += 1
            let valid = Array(String(decoding: line, as: UTF8.self).utf8)
            valid.withUnsafeBytes { addText($0, into: &events) }
        }
    }

    private func addText(_ text: UnsafeRawBufferPointer, into events: inout FileEvents) {
        events.add(.built) { out in
            out.append(contentsOf: #"{"message":""#.utf8)
            JSONString.appendEscaped(text, to: &out)
            out.append(contentsOf: #"","#.utf8)
            out.append(contentsOf: fileField)
            out.append(UInt8(ascii: "}"))
        }
    }

    /// `object` (a valid JSON object on one line) with `"file"` added after its `{`, unless it has one.
    private func addingFile(to object: UnsafeRawBufferPointer, into events: inout FileEvents) {
        events.add(.object) { out in
            if EventEncoder.hasTopLevelKey("file", in: object) {
                out.append(contentsOf: object)
                return
            }
            var brace = 0
            while object[brace] != UInt8(ascii: "{") { brace += 1 }
            var next = brace + 1
            while next < object.count, [0x20, 0x09, 0x0A, 0x0D].contains(object[next]) { next += 1 }
            out.append(contentsOf: object[...brace])
            out.append(contentsOf: fileField)
            if object[next] != UInt8(ascii: "}") { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: object[(brace + 1)...]))
        }
    }

    /// Whether the valid JSON object `object` has the top-level key `key` written without escapes.
    static func hasTopLevelKey(_ key: StaticString, in object: UnsafeRawBufferPointer) -> Bool {
        let wanted = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        var depth = 0
        var expectingKey = false
        var i = 0
        while i < object.count {
            switch object[i] {
            case UInt8(ascii: "{"):
                depth += 1
                expectingKey = depth == 1
            case UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { expectingKey = true }
            case UInt8(ascii: "\""):
                let start = i + 1
                i = start
                while object[i] != UInt8(ascii: "\"") { i += object[i] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectingKey {
                    if i - start == wanted.count && memcmp(object.baseAddress! + start, wanted.baseAddress!, wanted.count) == 0 {
                        return true
                    }
                    expectingKey = false
                }
            default:
                break
            }
            i += 1
        }
        return false
    }
}
