/// An output as the queue knows it: a named consumer with its own durable cursor, and what happens when
/// it falls behind the others.
///
/// One stored copy feeds every consumer. A record is deleted in the transaction where the last consumer
/// that still needed it acknowledges, buries or drops it.
public struct ConsumerSettings: Sendable, Hashable {
    /// Where a consumer that the queue has never seen starts.
    public enum StartFrom: String, Sendable, Hashable, CaseIterable {
        /// At the oldest stored record: it gets the whole backlog (the default: nothing is skipped).
        case oldest
        /// After the newest stored record: it gets what is appended from now on.
        case newest
    }

    /// What happens when the consumer lags: it holds records every other consumer is done with while the
    /// queue is full, or it passed `maxLagBytes` or `maxLagAge`.
    public enum WhenLagging: String, Sendable, Hashable, CaseIterable {
        /// It is moved past its oldest records (they are counted as dropped for it, and logged): a lagging
        /// consumer never stops the inputs or the other consumers. The default.
        case drop
        /// It keeps everything: when it holds the queue full, or passed its lag bound, appends are refused
        /// (`full`; the HTTP ingest answers 429 and the other inputs pause) until it catches up. For an
        /// output that must get every event.
        case block
    }

    /// The consumer's name, unique in the queue (the output's name in the configuration).
    public var name: String
    public var startFrom: StartFrom
    public var whenLagging: WhenLagging
    /// The most stored bytes the consumer may have pending (not yet acknowledged, buried or dropped).
    /// nil: no bound of its own (it is still moved past records the others are done with when the queue
    /// is full, with `drop`).
    public var maxLagBytes: Int?
    /// The oldest a pending record may be, in milliseconds. nil: no bound.
    public var maxLagAgeMilliseconds: Int64?

    public init(name: String, startFrom: StartFrom = .oldest, whenLagging: WhenLagging = .drop,
                maxLagBytes: Int? = nil, maxLagAgeMilliseconds: Int64? = nil) {
        self.name = name
        self.startFrom = startFrom
        self.whenLagging = whenLagging
        self.maxLagBytes = maxLagBytes
        self.maxLagAgeMilliseconds = maxLagAgeMilliseconds
    }

    /// The consumer of a queue with one output, and of the queues of earlier Ferry versions.
    public static let defaultName = "default"
}
