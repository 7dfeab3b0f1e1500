#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own for work that blocks (the queue's writer, librdkafka's poll loop, the shutdown
/// limit), named for `ps`, `top` and debuggers. Foundation's `Thread` would do the same and bring full
/// Foundation, and with it ICU, into the binary (docs/ARCHITECTURE.md, "Footprint").
package enum OSThread {
    /// Starts `body` on a new detached thread called `name` (at most 15 bytes: the system's limit).
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        precondition(name.utf8.count <= 15, "thread name \(name) is longer than the system's 15 bytes")
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            OSThread.name(start.name)
            start.body()
            return nil
        }, start)
        precondition(rc == 0, "pthread_create failed (\(String(cString: strerror(rc)))): the system has no room for another thread")
        pthread_detach(thread)
    }

    /// Names the calling thread: glibc's `pthread_setname_np`, looked up at run time (Swift's Glibc
    /// module leaves out the GNU extensions). Does nothing where it is missing.
    private static func name(_ name: String) {
        typealias SetName = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32
        guard let symbol = setName else { return }
        _ = unsafeBitCast(symbol, to: SetName.self)(pthread_self(), name)
    }

    private nonisolated(unsafe) static let setName: UnsafeMutableRawPointer? = dlopen(nil, RTLD_NOW).flatMap { dlsym($0, "pthread_setname_np") }

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
}

/// Writes `text` to standard error in full (a log line, a command's error), without Foundation's
/// `FileHandle`.
package func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { _ = writeAll(2, UnsafeRawBufferPointer($0)) }
}
