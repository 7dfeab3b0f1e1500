/// `Duration` in the units that C APIs, rates and metrics take: the one conversion of Ferry.
extension Duration {
    /// In seconds, with the fraction (for rates, and for latencies in metrics).
    package var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// In whole milliseconds, rounded toward zero (librdkafka's timeouts).
    package var inMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// In whole nanoseconds, rounded toward zero (histograms, clocks).
    package var inNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
