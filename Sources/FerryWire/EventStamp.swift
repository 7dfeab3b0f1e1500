#if canImport(Glibc)
import Glibc
#endif

/// Top-level keys of a JSON object to look for while it is validated (`JSONValidator.validateObject(_:finding:)`)
/// or scanned (`TopLevelField.presence(of:in:)`). At most 64; bit `i` of a result stands for `keys[i]`.
///
/// Keys are compared as written between their quotes: a key spelled with escapes (`"\u0040timestamp"`)
/// is not recognised. No sender we know of writes keys that way.
public struct TopLevelKeys: Sendable, Hashable {
    public let keys: [[UInt8]]

    public init(_ keys: [String]) {
        precondition(keys.count <= 64, "at most 64 keys can be looked for")
        self.keys = keys.map { Array($0.utf8) }
    }

    /// The bit of `key` in a result, 0 when it is not looked for.
    public func mask(of key: String) -> UInt64 {
        let bytes = Array(key.utf8)
        return keys.firstIndex(of: bytes).map { UInt64(1) << UInt64($0) } ?? 0
    }

    /// The bits of the keys in `bytes` (a key between its quotes) that match.
    @inline(__always)
    func match(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var found: UInt64 = 0
        for (i, wanted) in keys.enumerated() where wanted.count == key.count {
            if wanted.withUnsafeBytes({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) {
                found |= UInt64(1) << UInt64(i)
            }
        }
        return found
    }
}

/// What an input adds to every event it stores: `@timestamp` (the read time, RFC 3339 UTC with
/// milliseconds) when the event has none, `host` (the hostname) when the input knows it, and configured
/// constant `fields`. A key the event already has is left as the event has it: nothing is overwritten
/// and no key is written twice. Everything else of the event is kept byte for byte; the added keys come
/// first, right after the opening `{`.
///
/// Why stamp at read time: Logstash stamps an event without `@timestamp` when *it* receives it, so after
/// a three-day outage every replayed event would carry the day of the replay.
public struct EventStamp: Sendable, Hashable {
    /// A constant field: its key and its string value.
    public struct Field: Sendable, Hashable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    public let addTimestamp: Bool
    public let host: String?
    public let fields: [Field]
    /// The keys this stamp may add, in the order they are written: `@timestamp` (if added), `host` (if
    /// known), then the fields. Look for them with `JSONValidator.validateObject(_:finding:)`.
    public let keys: TopLevelKeys
    /// `"key":value` of every key but the timestamp, whose value changes with each batch.
    private let constantMembers: [[UInt8]]

    public static let timestampKey = "@timestamp"

    /// A stamp that adds nothing: events are stored exactly as received.
    public static let none = EventStamp(addTimestamp: false, host: nil, fields: [])

    /// Fields whose key repeats an earlier one (or `@timestamp`/`host` when those are added) are dropped;
    /// configurations refuse them before this point.
    public init(addTimestamp: Bool = true, host: String? = nil, fields: [Field] = []) {
        self.addTimestamp = addTimestamp
        self.host = host
        var names: [String] = []
        var members: [[UInt8]] = []
        if addTimestamp { names.append(Self.timestampKey) }
        if let host {
            names.append("host")
            members.append(Self.member("host", host))
        }
        var kept: [Field] = []
        for field in fields where !names.contains(field.key) && names.count < 64 {
            names.append(field.key)
            members.append(Self.member(field.key, field.value))
            kept.append(field)
        }
        self.fields = kept
        self.keys = TopLevelKeys(names)
        self.constantMembers = members
    }

    /// True when the stamp adds nothing.
    public var isEmpty: Bool { keys.keys.isEmpty }

    /// The bit of `@timestamp` in a presence mask (0 when timestamps are not added): inputs that build
    /// their events with a time of their own (syslog, journald) pass it as present.
    public var timestampMask: UInt64 { addTimestamp ? 1 : 0 }

    /// The members to add to events read at `milliseconds` since the Unix epoch, each `"key":value`.
    public func members(readAt milliseconds: Int64) -> Members {
        var all: [[UInt8]] = []
        all.reserveCapacity(keys.keys.count)
        if addTimestamp {
            var timestamp: [UInt8] = Array(#""@timestamp":""#.utf8)
            Timestamp.appendRFC3339(milliseconds: milliseconds, to: &timestamp)
            timestamp.append(UInt8(ascii: "\""))
            all.append(timestamp)
        }
        all += constantMembers
        return Members(members: all)
    }

    /// The members of one batch, ready to be written into its events.
    public struct Members: Sendable, Hashable {
        let members: [[UInt8]]
        /// True when nothing is added.
        public var isEmpty: Bool { members.isEmpty }
        /// A mask with every member's bit set.
        public var all: UInt64 { members.count == 64 ? .max : (UInt64(1) << UInt64(members.count)) - 1 }
    }

    private static func member(_ key: String, _ value: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        JSONString.appendEscaped(key.utf8, to: &out)
        out += Array(#"":""#.utf8)
        JSONString.appendEscaped(value.utf8, to: &out)
        out.append(UInt8(ascii: "\""))
        return out
    }
}

extension RecordBuilder {
    /// Adds one event, a valid JSON object (whitespace around it allowed), with the `members` whose bit is
    /// not set in `present` written right after its opening `{`. The rest of the event is copied as it is.
    public mutating func append(object: UnsafeRawBufferPointer, adding members: EventStamp.Members, present: UInt64) {
        let missing = members.all & ~present
        guard missing != 0, let open = object.firstIndex(of: UInt8(ascii: "{")) else {
            append(line: object)
            return
        }
        var rest = open + 1
        while rest < object.count, object[rest] == 0x20 || object[rest] == 0x09 { rest += 1 }
        let emptyObject = rest < object.count && object[rest] == UInt8(ascii: "}")
        var added = 0
        var count = 0
        for (i, member) in members.members.enumerated() where missing & (UInt64(1) << UInt64(i)) != 0 {
            added += member.count
            count += 1
        }
        let length = object.count + added + count - (emptyObject ? 1 : 0)
        appendLine(length: length) { buffer in
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: object[..<(open + 1)]))
            var first = true
            for (i, member) in members.members.enumerated() where missing & (UInt64(1) << UInt64(i)) != 0 {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                buffer.writeBytes(member)
                first = false
            }
            if !emptyObject { buffer.writeInteger(UInt8(ascii: ",")) }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: object[(open + 1)...]))
        }
    }

    /// Adds one event, a valid JSON object, with every member of `members` the event does not have (found
    /// by scanning its top-level keys): for events whose keys are not known from validation.
    public mutating func append(object: UnsafeRawBufferPointer, adding members: EventStamp.Members, keys: TopLevelKeys) {
        let present = members.isEmpty ? 0 : TopLevelField.presence(of: keys, in: object)
        append(object: object, adding: members, present: present)
    }
}
