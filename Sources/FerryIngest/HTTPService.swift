package import Hummingbird
package import HummingbirdCore
package import Logging
import FerryWire
package import NIOCore
import NIOHTTP1
import NIOPosix
package import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves a Hummingbird router on a HummingbirdCore server, as Hummingbird's `Application.run` does, less
/// what Ferry does not use: its `DateCache` service, a timer that woke the process every second for each
/// listener (the `Date` header comes from `HTTPDate` here, made again only when the second changed), and a
/// request id and task-local logger made for every request. Used by the ingest and the admin endpoints.
package struct HTTPService<Context: RequestContext>: Service where Context: InitializableFromSource<ApplicationRequestContextSource> {
    let responder: RouterResponder<Context>
    let server: HTTPServerBuilder
    let configuration: ServerConfiguration
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    package init(router: Router<Context>, server: HTTPServerBuilder, configuration: ServerConfiguration, logger: Logger,
                 onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) {
        responder = router.buildResponder()
        self.server = server
        self.configuration = configuration
        self.onServerRunning = onServerRunning
        self.logger = logger
    }

    package func run() async throws {
        let (responder, logger, serverName) = (self.responder, self.logger, configuration.serverName)
        let server = try self.server.buildServer(
            configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger
        ) { (request, responseWriter: consuming ResponseWriter, channel) in
            let context = Context(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error  // HummingbirdCore answers 400 and closes the connection
            } catch {
                logger.debug("unhandled error answered 500", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError, body: .init())
            }
            response.headers[.date] = HTTPDate.now()
            if let serverName { response.headers[.server] = serverName }
            do {
                try await responseWriter.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // Not rethrown as a parser error: that would make HummingbirdCore write a second response.
                throw HTTPServiceError.parseErrorWhileWritingResponse
            }
        } onServerRunning: { channel in
            await onServerRunning(channel)
        }
        try await server.run()
    }
}

enum HTTPServiceError: Error {
    case parseErrorWhileWritingResponse
}

/// The `Date` header's value (RFC 9110 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") for now, made again only
/// when the second changed since the last call: no timer, and one coarse clock read per response.
package enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    package static func now() -> String {
        var time = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_REALTIME_COARSE, &time)  // a tick old at most; no system call
        #else
        clock_gettime(CLOCK_REALTIME, &time)
        #endif
        let second = Int(time.tv_sec)
        return cache.withLock { cache in
            if cache.second != second { cache = (second, format(epochSeconds: second)) }
            return cache.text
        }
    }

    package static func format(epochSeconds: Int) -> String {
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let inDay = epochSeconds - days * 86_400
        let (year, month, day) = Timestamp.civil(fromDays: Int64(days))
        let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1 January 1970 was a Thursday
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[((days % 7) + 7) % 7]), \(two(day)) \(months[month - 1]) \(year) "
            + "\(two(inDay / 3600)):\(two(inDay / 60 % 60)):\(two(inDay % 60)) GMT"
    }
}
