import FerryWire

/// Writing a parsed message as one JSON object, fields in a fixed order. All text goes through
/// `JSONString.appendEscaped` (the project's one escaper); keys and names are constants.
extension SyslogParser {
    func write(_ parsed: ParsedMessage, in bytes: UnsafeRawBufferPointer, sourceIP: [UInt8]?, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if let time = parsed.time {
            Self.key(JSONKeys.timestamp, &first, &out)
            out.append(UInt8(ascii: "\""))
            // At least milliseconds, like the read time the seam stamps; more when the sender sent more.
            let digits = max(3, time.digits)
            var fraction = time.fraction
            for _ in time.digits..<digits { fraction *= 10 }
            Timestamp.appendRFC3339(seconds: time.seconds, fraction: fraction, digits: digits, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        stringField(JSONKeys.hostname, parsed.hostname, bytes, &first, &out)
        stringField(JSONKeys.appname, parsed.appname, bytes, &first, &out)
        stringField(JSONKeys.procid, parsed.procid, bytes, &first, &out)
        stringField(JSONKeys.msgid, parsed.msgid, bytes, &first, &out)
        Self.key(JSONKeys.facility, &first, &out)
        out.append(contentsOf: JSONKeys.facilities[parsed.priority >> 3])
        Self.key(JSONKeys.severity, &first, &out)
        out.append(contentsOf: JSONKeys.severities[parsed.priority & 7])
        stringField(JSONKeys.message, parsed.message, bytes, &first, &out)
        if !elements.isEmpty {
            Self.key(JSONKeys.structuredData, &first, &out)
            writeStructuredData(bytes, to: &out)
        }
        if let sourceIP { Self.sourceIP(sourceIP, &first, &out) }
        out.append(UInt8(ascii: "}"))
    }

    /// `{"message": <the whole message>}`, for a message that parses as neither RFC.
    func writeUnparsed(_ bytes: UnsafeRawBufferPointer, sourceIP: [UInt8]?, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        Self.key(JSONKeys.message, &first, &out)
        out.append(UInt8(ascii: "\""))
        JSONString.appendEscaped(bytes, to: &out)
        out.append(UInt8(ascii: "\""))
        if let sourceIP { Self.sourceIP(sourceIP, &first, &out) }
        out.append(UInt8(ascii: "}"))
    }

    /// `{sd-id: {param: value | [values]}}`: SD-IDs that occur twice are merged, and a parameter that occurs
    /// twice in one SD-ID gets an array of its values, in the order sent. The merging compares every pair,
    /// so beyond `mergeLimit` elements or parameters (only a hostile message has that many) the elements are
    /// written as they come: still valid JSON, with repeated keys.
    private func writeStructuredData(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        if parameters.count <= Self.mergeLimit, elements.count <= Self.mergeLimit, hasRepeats(bytes) {
            writeMerged(bytes, to: &out)
        } else {
            for (position, element) in elements.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                quoted(bytes, element.id, escaped: false, to: &out)
                out.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: "{")])
                for index in element.firstParameter..<(element.firstParameter + element.parameterCount) {
                    if index > element.firstParameter { out.append(UInt8(ascii: ",")) }
                    quoted(bytes, parameters[index].name, escaped: false, to: &out)
                    out.append(UInt8(ascii: ":"))
                    quoted(bytes, parameters[index].value, escaped: parameters[index].escaped, to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
        }
        out.append(UInt8(ascii: "}"))
    }

    private func writeMerged(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var firstElement = true
        for (position, element) in elements.enumerated() {
            if elements[..<position].contains(where: { Self.equal(bytes, $0.id, element.id) }) { continue }
            if !firstElement { out.append(UInt8(ascii: ",")) }
            firstElement = false
            quoted(bytes, element.id, escaped: false, to: &out)
            out.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: "{")])
            // The parameters of this SD-ID: its own, then those of later elements with the same id.
            let group = elements[position...].filter { Self.equal(bytes, $0.id, element.id) }
            let indices = group.flatMap { $0.firstParameter..<($0.firstParameter + $0.parameterCount) }
            var firstParameter = true
            for (offset, index) in indices.enumerated() {
                let parameter = parameters[index]
                if indices[..<offset].contains(where: { Self.equal(bytes, parameters[$0].name, parameter.name) }) { continue }
                if !firstParameter { out.append(UInt8(ascii: ",")) }
                firstParameter = false
                quoted(bytes, parameter.name, escaped: false, to: &out)
                out.append(UInt8(ascii: ":"))
                let values = indices[offset...].filter { Self.equal(bytes, parameters[$0].name, parameter.name) }
                if values.count == 1 {
                    quoted(bytes, parameter.value, escaped: parameter.escaped, to: &out)
                } else {
                    out.append(UInt8(ascii: "["))
                    for (n, valueIndex) in values.enumerated() {
                        if n > 0 { out.append(UInt8(ascii: ",")) }
                        quoted(bytes, parameters[valueIndex].value, escaped: parameters[valueIndex].escaped, to: &out)
                    }
                    out.append(UInt8(ascii: "]"))
                }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let mergeLimit = 64

    /// Whether an SD-ID, or a parameter within an element, occurs twice (without allocating: the common case
    /// has no repeats and is written as it comes).
    private func hasRepeats(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for (position, element) in elements.enumerated() {
            for other in elements[..<position] where Self.equal(bytes, other.id, element.id) { return true }
            let own = element.firstParameter..<(element.firstParameter + element.parameterCount)
            for index in own {
                for other in own.lowerBound..<index where Self.equal(bytes, parameters[other].name, parameters[index].name) { return true }
            }
        }
        return false
    }

    /// A JSON string of `range`; with `escaped`, the SD escapes `\"`, `\\` and `\]` are undone first (any
    /// other backslash stays, as RFC 5424 §6.3.3 says).
    private func quoted(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, escaped: Bool, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        if escaped {
            var plain: [UInt8] = []
            plain.reserveCapacity(range.count)
            var index = range.lowerBound
            while index < range.upperBound {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\"), index + 1 < range.upperBound,
                   bytes[index + 1] == UInt8(ascii: "\"") || bytes[index + 1] == UInt8(ascii: "\\") || bytes[index + 1] == UInt8(ascii: "]") {
                    plain.append(bytes[index + 1])
                    index += 2
                } else {
                    plain.append(byte)
                    index += 1
                }
            }
            plain.withUnsafeBytes { JSONString.appendEscaped($0, to: &out) }
        } else {
            JSONString.appendEscaped(UnsafeRawBufferPointer(rebasing: bytes[range]), to: &out)
        }
        out.append(UInt8(ascii: "\""))
    }

    private func stringField(_ key: StaticString, _ range: Range<Int>?, _ bytes: UnsafeRawBufferPointer, _ first: inout Bool, _ out: inout [UInt8]) {
        guard let range else { return }
        Self.key(key, &first, &out)
        quoted(bytes, range, escaped: false, to: &out)
    }

    private static func sourceIP(_ address: [UInt8], _ first: inout Bool, _ out: inout [UInt8]) {
        key(JSONKeys.sourceIP, &first, &out)
        out.append(UInt8(ascii: "\""))
        address.withUnsafeBytes { JSONString.appendEscaped($0, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    private static func key(_ key: StaticString, _ first: inout Bool, _ out: inout [UInt8]) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
    }

    private static func equal(_ bytes: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        for offset in 0..<a.count where bytes[a.lowerBound + offset] != bytes[b.lowerBound + offset] { return false }
        return true
    }
}

/// The constant parts of the events: keys with their colon (static strings: no array to retain per
/// message), names with their quotes.
private enum JSONKeys {
    static let timestamp: StaticString = #""@timestamp":"#
    static let hostname: StaticString = #""hostname":"#
    static let appname: StaticString = #""appname":"#
    static let procid: StaticString = #""procid":"#
    static let msgid: StaticString = #""msgid":"#
    static let facility: StaticString = #""facility":"#
    static let severity: StaticString = #""severity":"#
    static let message: StaticString = #""message":"#
    static let structuredData: StaticString = #""structured_data":"#
    static let sourceIP: StaticString = #""source_ip":"#
    static let facilities = SyslogNames.facilities.map { Array(JSONString.literal($0).utf8) }
    static let severities = SyslogNames.severities.map { Array(JSONString.literal($0).utf8) }
}
