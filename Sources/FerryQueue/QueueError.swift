/// An error of the queue. A struct with an opaque code (new codes do not break callers); `message` says
/// what happened, naming the file or sequence number, and what to do.
public struct QueueError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable {
            case full, batchTooLarge = "batch_too_large", closed, locked, notAQueue = "not_a_queue"
            case incompatibleVersion = "incompatible_version", truncated, corruptRecord = "corrupt_record"
            case environmentFailed = "environment_failed", io, invalidArgument = "invalid_argument", readOnly = "read_only"
        }
        let base: Base

        /// No room: `max_bytes` reached with policy `block`, LMDB's map is full, or the disk is full.
        /// The append stored nothing; retry later (the ingest answers 429 with Retry-After).
        public static let full = Code(base: .full)
        /// One batch is larger than `max_bytes`: it can never be stored. Split it.
        public static let batchTooLarge = Code(base: .batchTooLarge)
        /// The queue was closed.
        public static let closed = Code(base: .closed)
        /// Another process holds the data directory exclusively.
        public static let locked = Code(base: .locked)
        /// The directory or file is not a Ferry queue.
        public static let notAQueue = Code(base: .notAQueue)
        /// The queue was written with another format version.
        public static let incompatibleVersion = Code(base: .incompatibleVersion)
        /// `data.mdb` is shorter than LMDB's own meta page says: it was cut (copy interrupted, disk error).
        public static let truncated = Code(base: .truncated)
        /// A stored record fails its CRC or its header check.
        public static let corruptRecord = Code(base: .corruptRecord)
        /// LMDB failed in a way that needs the queue closed and opened again (I/O error, panic).
        public static let environmentFailed = Code(base: .environmentFailed)
        /// The file system refused (permissions, missing directory, ...).
        public static let io = Code(base: .io)
        /// A change was asked of a queue opened read-only.
        public static let readOnly = Code(base: .readOnly)
        /// The caller passed something the queue cannot use.
        public static let invalidArgument = Code(base: .invalidArgument)

        /// A short, stable name, safe as a metric label.
        public var shortDescription: String { base.rawValue }
        public var description: String { base.rawValue }
    }

    public let code: Code
    /// What happened and what to do.
    public let message: String
    /// The record concerned, when there is one.
    public let sequence: UInt64?

    public init(_ code: Code, _ message: String, sequence: UInt64? = nil) {
        self.code = code
        self.message = message
        self.sequence = sequence
    }

    public var description: String { message }
}

extension QueueError {
    static let closedError = QueueError(.closed, "the queue is closed; open it again to use it")

    /// Maps an LMDB failure met while writing to what it means for the caller.
    static func writing(_ error: LMDBError, path: String) -> QueueError {
        if error.isMapFull {
            return QueueError(.full, "queue is full: LMDB's map in \(path) has no free pages (\(error)); deliver or purge records, or raise queue.max_bytes")
        }
        if error.isDiskFull {
            return QueueError(.full, "queue is full: the disk under \(path) has no space left (\(error)); free disk space, nothing stored was lost")
        }
        if error.isFatal {
            return QueueError(.environmentFailed, "LMDB failed in \(path) (\(error)); stop Ferry, run `ferry-tools verify --data-dir \(path)`, then start it again")
        }
        return QueueError(.environmentFailed, "LMDB write failed in \(path) (\(error)); the change was not stored, retry it")
    }

    static func reading(_ error: LMDBError, path: String) -> QueueError {
        if error.isFatal {
            return QueueError(.environmentFailed, "LMDB read failed in \(path) (\(error)); stop Ferry and run `ferry-tools verify --data-dir \(path)`")
        }
        return QueueError(.environmentFailed, "LMDB read failed in \(path) (\(error)); retry, and if it persists run `ferry-tools verify --data-dir \(path)`")
    }
}
