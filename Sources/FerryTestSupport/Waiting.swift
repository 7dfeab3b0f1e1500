import Logging
public import ServiceLifecycle

/// Waits until `condition` holds, polling every `interval`, up to `timeout`; returns whether it held.
public func eventually(timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(20),
                       _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: interval)  // polling interval of a condition with a deadline
    }
    return try condition()
}

/// `eventually` for a condition that must await (a request to a process under test).
public func eventuallyAsync(timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(100),
                            _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: interval)  // polling interval of a condition with a deadline
    }
    return try await condition()
}

/// Runs `services` in one ServiceGroup for the length of `body`, then shuts them down gracefully.
public func withServices<R>(_ services: [any Service], _ body: () async throws -> R) async throws -> R {
    let quiet = Logger(label: "services") { _ in SwiftLogNoOpLogHandler() }
    let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: quiet))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let result = try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

