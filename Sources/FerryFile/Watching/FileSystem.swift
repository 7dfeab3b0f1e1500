#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file system calls of the file input, in one place: stat, open, positioned reads, glob, fnmatch,
/// and the boot id. Every function retries `EINTR` and reports failures as nil or a `FileInputError`.
package enum FileSystem {
    /// Device, inode and size of `path` (following symlinks); nil if it does not exist or is not a regular file.
    package static func stat(_ path: String) -> (id: FileID, size: Int64)? {
        var info = Glibc.stat()
        guard statPath(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return (FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)), Int64(info.st_size))
    }

    /// Device, inode, size and link count of the open file `descriptor`; nil if `fstat` fails or it is not a
    /// regular file.
    package static func stat(descriptor: Int32) -> (id: FileID, size: Int64, links: Int)? {
        var info = Glibc.stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return (FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)), Int64(info.st_size), Int(info.st_nlink))
    }

    /// Opens `path` read-only (close-on-exec; no access time update where allowed); nil on failure.
    package static func open(_ path: String) -> Int32? {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        return descriptor >= 0 ? descriptor : nil
    }

    /// Reads up to `count` bytes at `offset` into `buffer`; returns how many (0 at the end), or nil on error.
    package static func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int? {
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return done > 0 ? done : nil
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `count` bytes of `descriptor` at `offset`, fewer at the end of the file; nil on error.
    package static func bytes(_ descriptor: Int32, at offset: Int64, count: Int) -> [UInt8]? {
        guard count > 0, offset >= 0 else { return count == 0 ? [] : nil }
        var result: [UInt8]? = nil
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let n = read(descriptor, into: UnsafeMutableRawBufferPointer(buffer), at: offset)
            initialized = n ?? 0
            if n != nil { result = [] }
        }
        return result == nil ? nil : bytes
    }

    /// A look at `path`: stat and fingerprint; nil if it is not a regular file that can be opened.
    package static func observe(_ path: String, inGlob: Bool) -> FileObservation? {
        guard let descriptor = open(path) else { return nil }
        defer { close(descriptor) }
        guard let info = stat(descriptor: descriptor),
              let fingerprint = bytes(descriptor, at: 0, count: Int(min(info.size, Int64(FileState.fingerprintBytes))))
        else { return nil }
        return FileObservation(path: path, id: info.id, size: info.size, fingerprint: fingerprint, inGlob: inGlob)
    }

    /// The paths matching `pattern` (`glob(3)`, sorted; no error for a directory that cannot be read).
    package static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { result.gl_pathv[$0].map { String(cString: $0) } }
    }

    /// Whether `path` matches `pattern` (`fnmatch(3)`, `FNM_PATHNAME`: `*` does not cross a `/`).
    package static func matches(_ path: String, pattern: String) -> Bool {
        fnmatch(pattern, path, FNM_PATHNAME) == 0
    }

    /// The names in `directory` whose inode is `inode` (`readdir`'s `d_ino`; no stat per entry).
    package static func names(in directory: String, inode: UInt64) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            guard UInt64(entry.pointee.d_ino) == inode else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`), or "" where the kernel has none.
    package static func bootID() -> String {
        guard let descriptor = open("/proc/sys/kernel/random/boot_id") else { return "" }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard n > 0 else { return "" }
        return String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace()
    }

    /// The directory part of `path` ("/" for a file at the root).
    package static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// `stat(2)`, out of `FileSystem`, whose own `stat` hides it.
private func statPath(_ path: String, _ info: inout stat) -> Int32 {
    stat(path, &info)
}

/// Reads the tracker's copy checks through the file system.
package struct SystemProbe: FileContentProbe {
    package init() {}

    package func bytes(of id: FileID, path: String, at offset: Int64, count: Int) -> [UInt8]? {
        guard let descriptor = FileSystem.open(path) else { return nil }
        defer { close(descriptor) }
        guard FileSystem.stat(descriptor: descriptor)?.id == id,
              let bytes = FileSystem.bytes(descriptor, at: offset, count: count), bytes.count == count
        else { return nil }
        return bytes
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        let start = scalars.firstIndex { !$0.properties.isWhitespace } ?? scalars.endIndex
        let end = scalars.lastIndex { !$0.properties.isWhitespace }.map { scalars.index(after: $0) } ?? start
        return start < end ? String(scalars[start..<end]) : ""
    }
}
