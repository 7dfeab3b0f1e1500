/// The settings of one `file` input (`input.file` in the configuration), with their defaults.
///
/// Built and validated once at start (the agent's loader maps YAML keys to these fields and names the key in
/// its errors); `validated()` checks what a loader cannot know, such as the start pattern compiling.
package struct FileInputConfiguration: Sendable, Hashable {
    /// Where new files start: `beginning` (the default) or `end`. Applies to files found by the first scan
    /// that have no stored position; a file that appears later is read from its beginning (otherwise the
    /// lines written between its creation and its discovery would be lost).
    package enum StartAt: String, Sendable, CaseIterable {
        case beginning
        case end
    }

    /// The multiline settings: `start_pattern` and `flush_timeout`.
    package struct Multiline: Sendable, Hashable {
        /// A line matching this POSIX extended regular expression starts a new event (see `StartPattern`).
        package var startPattern: String
        /// A pending event (and a partial last line) is emitted once no byte came for this long. Default 5 s.
        package var flushTimeout: Duration

        package init(startPattern: String, flushTimeout: Duration = .seconds(5)) {
            self.startPattern = startPattern
            self.flushTimeout = flushTimeout
        }
    }

    /// 1 MiB, about one record: long enough for any log line, short enough that a file without newlines
    /// cannot make Ferry hold unbounded memory.
    package static let defaultMaxLineBytes = 1 << 20

    /// Globs (`glob(3)`: `*`, `?`, `[...]`, in directory parts too; no `**`) of the files to follow.
    package var paths: [String]
    /// Globs (`fnmatch(3)` with `FNM_PATHNAME`) of paths not to follow even when `paths` match them.
    package var exclude: [String] = []
    package var startAt: StartAt = .beginning
    package var format: FileFormat = .text
    /// A longer line is cut to this many bytes and the rest skipped up to its newline. Default 1 MiB.
    package var maxLineBytes: Int = FileInputConfiguration.defaultMaxLineBytes
    package var multiline: Multiline?
    /// How often the globs are evaluated again (new directories, events inotify cannot give). Default 10 s.
    package var rescanInterval: Duration = .seconds(10)
    /// How long the state of a file that is no longer reachable is kept (then pruned): a glob removed and
    /// added back within this time does not read again what was stored. Default 7 days.
    package var forgetAfter: Duration = .seconds(7 * 24 * 3600)
    /// A file that left the globs (renamed out of them, or deleted) is read to its end and closed once no
    /// byte came for this long. Default 10 s.
    package var drainIdle: Duration = .seconds(10)
    /// A followed file's descriptor is closed after this long without a byte (and opened again when it
    /// changes), so that thousands of quiet files hold no descriptors. Default 5 minutes.
    package var closeIdle: Duration = .seconds(300)
    /// Bytes read from one file before the next file gets its turn. Default 256 KiB.
    package var readChunkBytes: Int = 256 * 1024
    /// An append is made once this many bytes of events are ready (or nothing more is readable). Default 1 MiB.
    package var appendBytes: Int = 1 << 20

    package init(paths: [String]) {
        self.paths = paths
    }

    /// The reading settings, with the start pattern compiled; throws `FileInputError` on a bad setting.
    package func readingSettings() throws(FileInputError) -> ReadingSettings {
        guard !paths.isEmpty else { throw FileInputError(.invalidSetting, "the file input has no paths; list at least one glob") }
        for path in paths + exclude where !path.hasPrefix("/") {
            throw FileInputError(.invalidSetting, "file input glob \(path) is relative; write it as an absolute path")
        }
        guard maxLineBytes > 0 else { throw FileInputError(.invalidSetting, "max_line_bytes is \(maxLineBytes); it must be positive") }
        guard readChunkBytes > 0, appendBytes > 0 else { throw FileInputError(.invalidSetting, "read and append sizes must be positive") }
        var settings = ReadingSettings(format: format, maxLineBytes: maxLineBytes)
        if let multiline {
            guard multiline.flushTimeout > .zero else {
                throw FileInputError(.invalidSetting, "multiline flush_timeout must be positive")
            }
            settings.multiline = (try StartPattern(multiline.startPattern), milliseconds(multiline.flushTimeout))
        }
        return settings
    }
}

/// `duration` in whole milliseconds.
func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
}
