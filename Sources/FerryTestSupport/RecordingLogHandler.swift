public import Logging
import Synchronization

/// A log handler that keeps every message in memory, so tests can assert on what was logged
/// and keep their output quiet.
public struct RecordingLogHandler: LogHandler {
    public struct Entry: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: [String: String]
    }

    /// The messages logged through every logger made from this store.
    public final class Store: Sendable {
        private let entries = Mutex<[Entry]>([])
        public init() {}
        public var all: [Entry] { entries.withLock { $0 } }
        func add(_ entry: Entry) { entries.withLock { $0.append(entry) } }

        /// A logger that records into this store.
        public func logger(label: String = "ferry.test") -> Logger {
            Logger(label: label) { _ in RecordingLogHandler(store: self) }
        }
    }

    let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        store.add(Entry(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
    }
}
