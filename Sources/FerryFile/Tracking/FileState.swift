import FerryWire

/// A file's device and inode: what stays the same through a rename, and what two files with the same
/// first bytes (a common header) never share.
package struct FileID: Hashable, Sendable, Comparable, CustomStringConvertible {
    package var device: UInt64
    package var inode: UInt64

    package init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    package static func < (a: FileID, b: FileID) -> Bool { (a.device, a.inode) < (b.device, b.inode) }
    package var description: String { "\(device)/\(inode)" }
}

/// Everything Ferry keeps about one file between runs, stored in the queue's `positions` table in the same
/// transaction as the events read up to `position`.
///
/// The identity is `id` plus `fingerprint`: the file's first bytes, up to `fingerprintBytes`, or all of them
/// while the file is smaller (the fingerprint then grows with the file, and two fingerprints match when the
/// shorter is a prefix of the longer).
package struct FileState: Hashable, Sendable {
    /// Bytes of a file's start that make its fingerprint.
    package static let fingerprintBytes = 1024

    package var id: FileID
    package var fingerprint: [UInt8]
    /// The first byte not yet emitted, and whether a cut line's tail is being skipped there.
    package var position: FilePosition
    /// The bytes just before `position` (up to `FileReader.windowBytes`): if the file no longer holds them
    /// there, it was rewritten (copytruncate) and is read again from its start.
    package var window: [UInt8]
    /// The path under which Ferry began to follow the file: the `file` field of its events, kept through
    /// renames so that the lines of one log carry one name.
    package var name: String
    /// The path the file was last seen at.
    package var path: String
    /// The size the file had when last seen.
    package var size: Int64
    /// When the file was last seen, in milliseconds since the epoch.
    package var lastSeen: Int64
    /// The boot id of the host when the position was written: a file shorter than its position after a
    /// reboot lost its unsynced tail in a power cut; it was not truncated.
    package var bootID: String
    /// The file is out of reach (finished after a rotation, or vanished); the state is kept until pruned.
    package var gone: Bool
    /// The file was taken for a copy of content already read but is shorter than `position`: nothing of it
    /// is read until it grows past the position, and a size below the position is not a truncation.
    package var presumedCopy: Bool

    package init(id: FileID, fingerprint: [UInt8], position: FilePosition, window: [UInt8], name: String, path: String,
                 size: Int64, lastSeen: Int64, bootID: String, gone: Bool = false, presumedCopy: Bool = false) {
        self.id = id
        self.fingerprint = fingerprint
        self.position = position
        self.window = window
        self.name = name
        self.path = path
        self.size = size
        self.lastSeen = lastSeen
        self.bootID = bootID
        self.gone = gone
        self.presumedCopy = presumedCopy
    }

    // MARK: Stored form

    /// The current format of the stored value.
    package static let formatVersion: UInt8 = 1

    /// The prefix of every key of input `input`: `file/<input>/`.
    package static func keyPrefix(input: String) -> [UInt8] { Array("file/\(input)/".utf8) }

    /// The key of file `id` of input `input`: `file/<input>/<device>/<inode>`.
    package static func key(input: String, id: FileID) -> [UInt8] { Array("file/\(input)/\(id.device)/\(id.inode)".utf8) }

    /// The stored value (format version 1, big-endian):
    ///
    /// | size | field                                              |
    /// |------|----------------------------------------------------|
    /// | 1    | format version (1)                                 |
    /// | 1    | flags: 1 skipping, 2 gone, 4 presumed copy         |
    /// | 8    | device                                             |
    /// | 8    | inode                                              |
    /// | 8    | offset                                             |
    /// | 8    | size last seen                                     |
    /// | 8    | last seen, ms since the epoch                      |
    /// | 2+n  | fingerprint (length, bytes; n ≤ 1024)              |
    /// | 1+n  | window (length, bytes; n ≤ 64)                     |
    /// | 1+n  | boot id (length, UTF-8)                            |
    /// | 2+n  | name (length, UTF-8)                               |
    /// | 2+n  | path last seen (length, UTF-8)                     |
    /// | 4    | CRC-32 of everything before it                     |
    package var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(60 + fingerprint.count + window.count + bootID.utf8.count + name.utf8.count + path.utf8.count)
        out.append(FileState.formatVersion)
        out.append((position.skipping ? 1 : 0) | (gone ? 2 : 0) | (presumedCopy ? 4 : 0))
        for value in [id.device, id.inode, UInt64(bitPattern: position.offset), UInt64(bitPattern: size), UInt64(bitPattern: lastSeen)] {
            withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
        }
        func field(_ bytes: some Collection<UInt8>, lengthBytes: Int) {
            let count = min(bytes.count, lengthBytes == 1 ? Int(UInt8.max) : Int(UInt16.max))
            if lengthBytes == 2 { out.append(UInt8(count >> 8)) }
            out.append(UInt8(count & 0xFF))
            out.append(contentsOf: bytes.prefix(count))
        }
        field(fingerprint, lengthBytes: 2)
        field(window, lengthBytes: 1)
        field(bootID.utf8, lengthBytes: 1)
        field(name.utf8, lengthBytes: 2)
        field(path.utf8, lengthBytes: 2)
        let crc = out.withUnsafeBytes { Gzip.crc32($0) }
        withUnsafeBytes(of: crc.bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Reads a stored value; throws `FileInputError` (`unknownPositionVersion`, `damagedPosition`) with a
    /// message that names `key` when the value is from a newer Ferry, cut short, or damaged.
    package init(decoding value: some Collection<UInt8>, key: String) throws(FileInputError) {
        let bytes = Array(value)
        guard let version = bytes.first else {
            throw FileInputError(.damagedPosition, "stored position \(key) is empty: it is damaged; the file will be read as a new one")
        }
        guard version == FileState.formatVersion else {
            throw FileInputError(.unknownPositionVersion, "stored position \(key) has format version \(version), which this Ferry does not read; run the Ferry that wrote it, or a newer one")
        }
        guard bytes.count >= 4 + 2 else {
            throw FileInputError(.damagedPosition, "stored position \(key) is \(bytes.count) bytes, too short: it is damaged; the file will be read as a new one")
        }
        let stored = UInt32(bytes[bytes.count - 4]) << 24 | UInt32(bytes[bytes.count - 3]) << 16 | UInt32(bytes[bytes.count - 2]) << 8 | UInt32(bytes[bytes.count - 1])
        let computed = bytes.withUnsafeBytes { Gzip.crc32(UnsafeRawBufferPointer(rebasing: $0[..<(bytes.count - 4)])) }
        guard stored == computed else {
            throw FileInputError(.damagedPosition, "stored position \(key) fails its checksum: it is damaged; the file will be read as a new one")
        }
        var reader = Reader(bytes: bytes[..<(bytes.count - 4)], key: key)
        _ = try reader.byte()
        let flags = try reader.byte()
        let device = try reader.uint64()
        let inode = try reader.uint64()
        let offset = Int64(bitPattern: try reader.uint64())
        let size = Int64(bitPattern: try reader.uint64())
        let lastSeen = Int64(bitPattern: try reader.uint64())
        let fingerprint = try reader.field(lengthBytes: 2)
        let window = try reader.field(lengthBytes: 1)
        let bootID = String(decoding: try reader.field(lengthBytes: 1), as: UTF8.self)
        let name = String(decoding: try reader.field(lengthBytes: 2), as: UTF8.self)
        let path = String(decoding: try reader.field(lengthBytes: 2), as: UTF8.self)
        guard reader.atEnd, offset >= 0 else {
            throw FileInputError(.damagedPosition, "stored position \(key) has fields that do not add up: it is damaged; the file will be read as a new one")
        }
        self.init(id: FileID(device: device, inode: inode), fingerprint: fingerprint,
                  position: FilePosition(offset: offset, skipping: flags & 1 != 0), window: window, name: name, path: path,
                  size: size, lastSeen: lastSeen, bootID: bootID, gone: flags & 2 != 0, presumedCopy: flags & 4 != 0)
    }

    private struct Reader {
        let bytes: ArraySlice<UInt8>
        let key: String
        var index: Int

        init(bytes: ArraySlice<UInt8>, key: String) {
            self.bytes = bytes
            self.key = key
            self.index = bytes.startIndex
        }

        var atEnd: Bool { index == bytes.endIndex }

        mutating func take(_ count: Int) throws(FileInputError) -> ArraySlice<UInt8> {
            guard bytes.endIndex - index >= count else {
                throw FileInputError(.damagedPosition, "stored position \(key) ends inside a field: it is damaged; the file will be read as a new one")
            }
            defer { index += count }
            return bytes[index..<(index + count)]
        }

        mutating func byte() throws(FileInputError) -> UInt8 { try take(1).first! }

        mutating func uint64() throws(FileInputError) -> UInt64 {
            try take(8).reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func field(lengthBytes: Int) throws(FileInputError) -> [UInt8] {
            let count = try take(lengthBytes).reduce(0) { $0 << 8 | Int($1) }
            return Array(try take(count))
        }
    }
}
