#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The input's `paths` and `exclude` globs: which paths are followed, and which directories to watch.
package struct Globs: Sendable {
    package let paths: [String]
    package let exclude: [String]

    package init(paths: [String], exclude: [String] = []) {
        self.paths = paths
        self.exclude = exclude
    }

    /// Every regular-file path the globs match now and no exclude matches, sorted, without duplicates.
    package func scan() -> [String] {
        var found = Set<String>()
        for pattern in paths {
            for path in FileSystem.glob(pattern) where !isExcluded(path) { found.insert(path) }
        }
        return found.sorted()
    }

    /// Whether `path` is one the globs follow.
    package func matches(_ path: String) -> Bool {
        paths.contains { FileSystem.matches(path, pattern: $0) } && !isExcluded(path)
    }

    private func isExcluded(_ path: String) -> Bool {
        exclude.contains { FileSystem.matches(path, pattern: $0) }
    }

    /// The directories holding the files the globs can match: what inotify watches. A directory part with
    /// wildcards is globbed itself, so its new directories appear at the next rescan.
    package func directories() -> [String] {
        var found = Set<String>()
        for pattern in paths {
            let directory = FileSystem.directory(of: pattern)
            if directory.contains(where: { "*?[".contains($0) }) {
                for path in FileSystem.glob(directory + "/") {
                    found.insert(path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path)
                }
            } else {
                found.insert(directory)
            }
        }
        return found.sorted()
    }
}
