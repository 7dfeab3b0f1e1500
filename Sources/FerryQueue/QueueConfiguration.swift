/// How a queue stores events. Defaults are the safe ones: bounded size, and `block` when full.
public struct QueueConfiguration: Sendable, Hashable {
    /// What an append does when the queue holds `maxBytes`.
    public enum WhenFull: String, Sendable, Hashable, CaseIterable {
        /// Refuse the append with `QueueError.full` (the ingest answers 429 + Retry-After). Loses nothing.
        case block
        /// Delete the oldest records to make room, counting them as dropped. For hosts that prefer fresh data.
        case dropOldest = "drop_oldest"
    }

    /// Free space the queue leaves on its file system for the host.
    public enum MinFree: Sendable, Hashable {
        /// At least this many bytes free.
        case bytes(UInt64)
        /// At least this percentage (0–100) of the file system's size free.
        case percent(Double)

        /// The bytes to keep free on a file system of `total` bytes.
        public func bytes(ofTotal total: UInt64) -> UInt64 {
            switch self {
            case .bytes(let bytes): bytes
            case .percent(let percent): UInt64(Double(total) * min(max(percent, 0), 100) / 100)
            }
        }
    }

    /// Upper bound of stored bytes (records and dead records, header and compressed payload). Default 1 GiB.
    public var maxBytes: Int
    /// Policy when `maxBytes` is reached. Default `.block`.
    public var whenFull: WhenFull
    /// Appends are refused (`QueueError.full`, whatever `whenFull` says) while the queue's file system has
    /// less free than this, so that Ferry never takes the space the host needs. Default `.bytes(0)` (off)
    /// for the library; the agent's default is 5 %.
    public var minFree: MinFree = .bytes(0)
    /// Records made longer ago than this (milliseconds) are dropped for every output, counted as dropped
    /// and logged: queued events have an age limit. nil (the default) keeps them until delivered.
    public var maxAgeMilliseconds: Int64?
    /// How long a `Ferry-Batch` id stays in the `seen` table. Default one hour.
    public var seenMaxAgeMilliseconds: Int64
    /// Most `Ferry-Batch` ids kept in the `seen` table; the oldest go first. Default 100,000.
    public var seenMaxCount: Int
    /// Most record bytes one group commit carries; more waits for the next commit. Default 32 MiB.
    public var maxGroupBytes: Int

    /// The outputs that consume the queue, each with its own cursor. nil keeps the consumers the queue has
    /// (tools, tests); a queue without any gets one, `default`. An exclusive open makes the ones named here
    /// that the queue lacks and removes the ones it has that are not named (with a warning: they lose
    /// what they had not delivered).
    public var consumers: [ConsumerSettings]?

    /// For tests that need LMDB's own `MDB_MAP_FULL` before `maxBytes` is reached.
    package var mapSizeOverride: Int?

    public init(
        maxBytes: Int = 1 << 30,
        whenFull: WhenFull = .block,
        seenMaxAgeMilliseconds: Int64 = 3_600_000,
        seenMaxCount: Int = 100_000,
        maxGroupBytes: Int = 32 << 20
    ) {
        self.maxBytes = maxBytes
        self.whenFull = whenFull
        self.seenMaxAgeMilliseconds = seenMaxAgeMilliseconds
        self.seenMaxCount = seenMaxCount
        self.maxGroupBytes = maxGroupBytes
    }

    /// LMDB's map size, derived from `maxBytes`: twice the bound (B-tree pages are not full, and freed pages
    /// are reused only once no reader needs them) plus 64 MiB for the small tables and the free list.
    public var mapSize: Int {
        if let mapSizeOverride { return mapSizeOverride }
        let (doubled, overflow) = maxBytes.multipliedReportingOverflow(by: 2)
        return overflow ? Int.max / 2 : doubled + (64 << 20)
    }
}
