package import ServiceLifecycle

/// An input the agent runs: a swift-service-lifecycle `Service` that appends through its `Intake`.
package protocol Input: Service {
    /// Returns once the input takes events (its socket listens, its source is open), with one line
    /// for the start-up banner that says where events come from.
    func started() async -> String
}
