#if canImport(Glibc)
import Glibc
#endif

/// Whether this process can read a journal, checked before it is opened.
///
/// sd-journal skips files it may not read without reporting it: opened without permission, the system journal
/// merely looks empty, and an input would wait forever for entries. So the journal's files are surveyed first
/// (`survey`, I/O) and judged (`verdict`, pure): no readable file where unreadable ones exist refuses to start
/// with what to do (the `systemd-journal` group, or root).
enum JournalAccess {
    /// What a look at the journal's directories and files found.
    struct Survey: Hashable, Sendable {
        /// Directories or files that do not exist.
        var missing: [String] = []
        /// Journal files (and directories) that exist but cannot be opened for reading.
        var unreadable: [Unreadable] = []
        /// Journal files that can be read.
        var readable = 0
    }

    struct Unreadable: Hashable, Sendable {
        var path: String
        var error: Int32
    }

    /// What to do about a survey.
    enum Verdict: Hashable, Sendable {
        case open
        /// Open, and log this warning.
        case openWithWarning(String)
        case refuse(JournaldError)
    }

    /// The directories sd-journal reads for the local system journal.
    static let systemRoots = ["/run/log/journal", "/var/log/journal"]

    /// Looks at the files `source` names: for a directory, its `*.journal` and `*.journal~` files and those of
    /// its machine-id subdirectories, as sd-journal reads them.
    static func survey(_ source: JournaldInputConfiguration.Source) -> Survey {
        var survey = Survey()
        switch source {
        case .system:
            for root in systemRoots { scan(directory: root, depth: 1, into: &survey) }
        case .directory(let path):
            scan(directory: path, depth: 1, into: &survey)
        case .files(let paths):
            for path in paths { check(file: path, into: &survey) }
        }
        return survey
    }

    /// Judges a survey of `source`; `uid` only appears in messages.
    static func verdict(_ source: JournaldInputConfiguration.Source, _ survey: Survey, uid: UInt32) -> Verdict {
        let denied = survey.unreadable.filter { $0.error == EACCES || $0.error == EPERM }
        let permissionError = JournaldError(
            .permissionDenied,
            "cannot read \(describe(source)): \(denied.count) of its journal files or directories (e.g. \(denied.first?.path ?? "")) may not be read by uid \(uid); add Ferry's user to the systemd-journal group (or run it as root) and restart it")
        switch source {
        case .files:
            if let missing = survey.missing.first {
                return .refuse(JournaldError(.cannotOpen, "journal file \(missing) does not exist; check the path"))
            }
            if !denied.isEmpty { return .refuse(permissionError) }
        case .directory(let path):
            if !survey.missing.isEmpty {
                return .refuse(JournaldError(.cannotOpen, "journal directory \(path) does not exist; name journald's directory (e.g. /var/log/journal) or create it"))
            }
            if !denied.isEmpty && survey.readable == 0 { return .refuse(permissionError) }
        case .system:
            if survey.missing.count == systemRoots.count {
                return .refuse(JournaldError(
                    .cannotOpen,
                    "no journal on this host: neither /run/log/journal nor /var/log/journal exists; is systemd-journald running (and not with Storage=none)? Or name a journal directory"))
            }
            if !denied.isEmpty && survey.readable == 0 { return .refuse(permissionError) }
        }
        if !denied.isEmpty {
            return .openWithWarning("\(denied.count) journal files (e.g. \(denied[0].path)) may not be read by uid \(uid) and are skipped; add Ferry's user to the systemd-journal group to read them")
        }
        if let other = survey.unreadable.first {
            return .openWithWarning("journal file \(other.path) cannot be opened (\(String(cString: strerror(other.error)))) and is skipped")
        }
        if survey.readable == 0 {
            return .openWithWarning("\(describe(source)) has no journal files yet; waiting for them")
        }
        return .open
    }

    private static func describe(_ source: JournaldInputConfiguration.Source) -> String {
        switch source {
        case .system: "the system journal"
        case .directory(let path): "the journal in \(path)"
        case .files(let paths): "the journal files \(paths.joined(separator: ", "))"
        }
    }

    private static func scan(directory: String, depth: Int, into survey: inout Survey) {
        guard let dir = opendir(directory) else {
            let error = errno
            if error == ENOENT { survey.missing.append(directory) } else { survey.unreadable.append(Unreadable(path: directory, error: error)) }
            return
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            let path = directory + "/" + name
            if name.hasSuffix(".journal") || name.hasSuffix(".journal~") {
                check(file: path, into: &survey)
            } else if depth > 0 && isMachineID(name) {
                scan(directory: path, depth: depth - 1, into: &survey)
            }
        }
    }

    private static func check(file path: String, into survey: inout Survey) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let error = errno
            if error == ENOENT { survey.missing.append(path) } else { survey.unreadable.append(Unreadable(path: path, error: error)) }
            return
        }
        close(fd)
        survey.readable += 1
    }

    /// 32 lowercase hex digits: the name of a machine's journal directory.
    private static func isMachineID(_ name: String) -> Bool {
        name.utf8.count == 32 && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
