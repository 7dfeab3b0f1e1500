/// The `Ferry-Batch` header value: `<agent-id>/<first-seq>-<last-seq>`.
///
/// A sending Ferry puts it on every request; a receiving Ferry stores it in its `seen` table in the same
/// transaction as the events, and answers an exact retry with 200 without storing it again.
public struct BatchID: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var agentID: String
    public var firstSequence: UInt64
    public var lastSequence: UInt64

    public init(agentID: String, firstSequence: UInt64, lastSequence: UInt64) {
        self.agentID = agentID
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
    }

    /// Parses a header value; nil if it is not of the form `<agent-id>/<first>-<last>` with first ≤ last.
    public init?(_ description: String) {
        guard let slash = description.lastIndex(of: "/") else { return nil }
        let agent = description[..<slash]
        let range = description[description.index(after: slash)...]
        guard !agent.isEmpty, agent.count <= 128,
              agent.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }),
              let dash = range.firstIndex(of: "-"),
              let first = UInt64(range[..<dash]),
              let last = UInt64(range[range.index(after: dash)...]),
              first <= last
        else { return nil }
        self.init(agentID: String(agent), firstSequence: first, lastSequence: last)
    }

    /// Parses a header value, with an error that says what is wrong.
    public static func parse(_ value: String) throws(WireError) -> BatchID {
        guard let id = BatchID(value) else {
            throw WireError(.invalidBatchID, "Ferry-Batch header \"\(value.prefix(80))\" is not <agent-id>/<first-seq>-<last-seq>; fix the sender or drop the header")
        }
        return id
    }

    public var description: String { "\(agentID)/\(firstSequence)-\(lastSequence)" }
}
