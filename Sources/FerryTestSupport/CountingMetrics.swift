public import CoreMetrics
import Synchronization

/// A metrics factory that keeps its counters' values, for a test that checks what a component counted
/// without the process-wide metrics system (which can be set once per process). Recorders and timers
/// are dropped.
public final class CountingMetrics: MetricsFactory, Sendable {
    fileprivate let values = Mutex<[String: Int64]>([:])

    public init() {}

    /// The value of the counter `label` with `dimensions` (in any order); 0 if it was never incremented.
    public func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        values.withLock { $0[Self.key(label, dimensions)] ?? 0 }
    }

    fileprivate static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Handler(owner: self, key: Self.key(label, dimensions))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        NOOPMetricsHandler.instance
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        NOOPMetricsHandler.instance
    }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}

    private final class Handler: CounterHandler, Sendable {
        let owner: CountingMetrics
        let key: String

        init(owner: CountingMetrics, key: String) {
            self.owner = owner
            self.key = key
        }

        func increment(by amount: Int64) {
            owner.values.withLock { $0[key, default: 0] += amount }
        }

        func reset() {
            owner.values.withLock { $0[key] = 0 }
        }
    }
}
