/// RFC 5424 (§6): `<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]`.
extension SyslogParser {
    /// Fills `parsed` from the header after the PRI at `start`, or names what is wrong.
    mutating func parseRFC5424(_ bytes: UnsafeRawBufferPointer, from start: Int, into parsed: inout ParsedMessage) -> SyslogParseFailure? {
        let end = bytes.count
        var index = start
        while index < end, bytes[index] != UInt8(ascii: " ") { index += 1 }  // VERSION, checked by the caller
        index += 1

        if bytes[index] == UInt8(ascii: "-") {
            index += 1
        } else {
            guard let (time, after) = Self.parseRFC3339(bytes, at: index) else { return .rfc5424Timestamp }
            parsed.time = time
            index = after
        }
        guard index < end, bytes[index] == UInt8(ascii: " ") else {
            return index < end ? .rfc5424Timestamp : .rfc5424Header
        }
        index += 1

        var fields: [Range<Int>?] = [nil, nil, nil, nil]
        for field in 0..<4 {
            let tokenStart = index
            while index < end, bytes[index] != UInt8(ascii: " ") { index += 1 }
            guard index > tokenStart else { return .rfc5424Header }
            let token = tokenStart..<index
            fields[field] = token.count == 1 && bytes[tokenStart] == UInt8(ascii: "-") ? nil : token
            if field < 3 {
                guard index < end else { return .rfc5424Header }
                index += 1
            }
        }
        (parsed.hostname, parsed.appname, parsed.procid, parsed.msgid) = (fields[0], fields[1], fields[2], fields[3])
        guard index < end else { return nil }
        index += 1  // the space after MSGID
        guard index < end else { return nil }

        if bytes[index] == UInt8(ascii: "-"), index + 1 == end || bytes[index + 1] == UInt8(ascii: " ") {
            index += 1
        } else if bytes[index] == UInt8(ascii: "[") {
            guard let after = parseStructuredData(bytes, at: index) else { return .rfc5424StructuredData }
            index = after
        }
        // Else no STRUCTURED-DATA at all: some senders put MSG right after MSGID. Read it as MSG.
        if index < end, bytes[index] == UInt8(ascii: " ") { index += 1 }
        parsed.message = Self.messageRange(bytes, from: index)
        return nil
    }

    /// SD-ELEMENTs from `start` (a `[`) up to the first byte after the last `]`, into `elements` and
    /// `parameters`; nil when an element is malformed.
    private mutating func parseStructuredData(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Int? {
        let end = bytes.count
        var index = start
        while index < end, bytes[index] == UInt8(ascii: "[") {
            index += 1
            let idStart = index
            while index < end, isSDNameByte(bytes[index]) { index += 1 }
            guard index > idStart, index < end else { return nil }
            var element = StructuredDataElement(id: idStart..<index, firstParameter: parameters.count, parameterCount: 0)
            while true {
                guard index < end else { return nil }
                if bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    break
                }
                guard bytes[index] == UInt8(ascii: " ") else { return nil }
                while index < end, bytes[index] == UInt8(ascii: " ") { index += 1 }
                let nameStart = index
                while index < end, isSDNameByte(bytes[index]) { index += 1 }
                guard index > nameStart, index + 1 < end, bytes[index] == UInt8(ascii: "="),
                      bytes[index + 1] == UInt8(ascii: "\"") else { return nil }
                let name = nameStart..<index
                index += 2
                let valueStart = index
                var escaped = false
                while index < end, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") {
                        escaped = true
                        index += 1
                    }
                    index += 1
                }
                guard index < end else { return nil }
                parameters.append(StructuredDataParameter(name: name, value: valueStart..<index, escaped: escaped))
                element.parameterCount += 1
                index += 1
            }
            elements.append(element)
        }
        return index
    }

    /// SD-NAME: printable US-ASCII except `=`, space, `]` and `"` (RFC 5424 §6.3.3).
    @inline(__always)
    private func isSDNameByte(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "=") && byte != UInt8(ascii: "]") && byte != UInt8(ascii: "\"")
    }

    /// MSG from `start` to the end, without a leading UTF-8 BOM; nil when nothing is left.
    static func messageRange(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Range<Int>? {
        var index = start
        if index + 2 < bytes.count, bytes[index] == 0xEF, bytes[index + 1] == 0xBB, bytes[index + 2] == 0xBF { index += 3 }
        return index < bytes.count ? index..<bytes.count : nil
    }
}
