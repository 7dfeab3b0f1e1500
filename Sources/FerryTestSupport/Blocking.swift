public import Foundation

/// Runs blocking work (a child process, a raw socket) on a thread of its own, so that it never holds one
/// of the few threads of Swift's cooperative pool that the server under test needs.
public func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

private final class DataBox: @unchecked Sendable {
    var data = Data()  // written by one thread, read after a semaphore wait
}

/// What a finished process printed and returned.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: Data
    public let stderr: Data
    public var output: String { String(decoding: stdout, as: UTF8.self) }
    public var errors: String { String(decoding: stderr, as: UTF8.self) }
}

/// Runs `executable` to completion (on a thread of its own) and returns its status and output.
public func run(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> ProcessResult {
    try await onThread {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inp
        try process.run()
        if let input {
            inp.fileHandleForWriting.write(input)
            try inp.fileHandleForWriting.close()
        }
        let stderrBox = DataBox()
        let done = DispatchSemaphore(value: 0)
        let errReader = Thread {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        errReader.start()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        let stderr = stderrBox.data
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }
}

/// Makes a CA, server and client certificates with `tools/gen-certs` (openssl) in a new temporary directory.
public func makeTestCertificates(password: String = "test-pass") async throws -> TemporaryDirectory {
    let dir = try TemporaryDirectory(prefix: "ferry-certs")
    let script = packageRoot() + "/tools/gen-certs"
    let result = try await run("/bin/bash", [script, dir.path, password])
    guard result.status == 0 else {
        throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "tools/gen-certs failed: \(result.errors)"])
    }
    return dir
}

/// The package's root directory (where Package.swift is), found from this source file's path.
public func packageRoot(file: String = #filePath) -> String {
    var url = URL(fileURLWithPath: file)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    return FileManager.default.currentDirectoryPath
}
