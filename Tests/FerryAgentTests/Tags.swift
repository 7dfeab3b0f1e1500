import Testing

extension Tag {
    /// Tests that run for many seconds or more (processes killed and restarted, clusters, long loads).
    /// Each has a `.timeLimit`, so that a hang fails the run instead of holding it.
    @Tag static var long: Self
}
