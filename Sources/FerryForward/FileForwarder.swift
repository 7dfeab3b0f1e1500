package import FerryPipeline
package import FerryQueue
import FerryWire
import Foundation
package import Logging
import NIOCore
package import ServiceLifecycle

/// Settings of the `file` output.
package struct FileOutputConfiguration: Sendable, Hashable {
    /// Directory of the NDJSON files; made if missing.
    package var path: String
    /// A new file is started once the current one holds this many bytes. Default 256 MiB.
    package var rotateBytes: Int

    package init(path: String, rotateBytes: Int = 256 << 20) {
        self.path = path
        self.rotateBytes = rotateBytes
    }
}

/// The `file` output, the terminal sink of an aggregator: writes every leased event as one NDJSON line,
/// fsyncs, and only then acknowledges the records. Files are `ferry-<first sequence>.ndjson`, rotated by size.
///
/// At least once: a crash between the fsync and the acknowledgement writes those events again after the
/// restart. A damaged record is moved to `dead`, never written.
package final class FileForwarder: Service, Sendable {
    private let consumer: Consumer
    private let configuration: FileOutputConfiguration
    private let logger: Logger

    /// The output of the queue's default consumer (tests, tools).
    package convenience init(queue: Queue, configuration: FileOutputConfiguration, logger: Logger = Logger(label: "ferry.output.file")) throws(ConfigurationError) {
        try self.init(consumer: queue.defaultConsumer, configuration: configuration, logger: logger)
    }

    /// An output that delivers what `consumer` (its own cursor in the queue) has not settled.
    package init(consumer: Consumer, configuration: FileOutputConfiguration, logger: Logger = Logger(label: "ferry.output.file")) throws(ConfigurationError) {
        do {
            try FileManager.default.createDirectory(atPath: configuration.path, withIntermediateDirectories: true)
        } catch {
            throw ConfigurationError("output.file.path \(configuration.path) cannot be made (\(error)); choose a writable directory", code: .unusable)
        }
        self.consumer = consumer
        self.configuration = configuration
        self.logger = logger
    }

    package func run() async throws {
        var file: (fd: Int32, size: Int)?
        defer { if let file { close(file.fd) } }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Files rotate between leases, so a lease is kept small next to the rotation size.
            let lease = try consumer.lease(maxRecords: 1024, maxBytes: min(8 << 20, max(configuration.rotateBytes / 8, 1)))
            if !lease.corrupt.isEmpty {
                _ = try await consumer.moveToDead(lease.corrupt.map(\.sequence), reason: "damaged record: \(lease.corrupt[0].error.message)")
            }
            guard let first = lease.records.first else {
                await consumer.waitForAppend(timeout: .seconds(1))
                continue
            }
            var output = ByteBuffer()
            var bad: [(UInt64, String)] = []
            var good: [UInt64] = []
            for stored in lease.records {
                do {
                    var ndjson = try stored.record.decompressedPayload()
                    output.writeBuffer(&ndjson)
                    good.append(stored.sequence)
                } catch {
                    bad.append((stored.sequence, error.message))
                }
            }
            if file == nil || file!.size >= configuration.rotateBytes {
                if let open = file { close(open.fd) }
                file = (try openFile(startingAt: first.sequence), 0)
            }
            try write(output, to: file!.fd)
            file!.size += output.readableBytes
            if !bad.isEmpty {
                _ = try await consumer.moveToDead(bad.map(\.0), reason: "record cannot be decoded: \(bad[0].1)")
            }
            try await consumer.acknowledge(good)
        }
    }

    private func openFile(startingAt sequence: UInt64) throws -> Int32 {
        let path = configuration.path + "/ferry-\(String(format: "%020llu", sequence)).ndjson"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw ConfigurationError("cannot open \(path): \(String(cString: strerror(errno))); check output.file.path", code: .unusable)
        }
        // Make the new file's directory entry durable too.
        let dir = open(configuration.path, O_RDONLY | O_DIRECTORY)
        if dir >= 0 { fsync(dir); close(dir) }
        logger.info("file output writes a new file", metadata: ["ferry.output.file": "\(path)"])
        return fd
    }

    /// Writes everything, then fsyncs: the events are on disk before their records are deleted.
    private func write(_ buffer: ByteBuffer, to fd: Int32) throws {
        let failed = buffer.withUnsafeReadableBytes { writeAll(fd, $0) }
        guard failed == 0 else {
            throw ConfigurationError("file output write failed: \(String(cString: strerror(failed))); free disk space, the events stay queued", code: .unusable)
        }
        guard fdatasync(fd) == 0 else {
            throw ConfigurationError("file output fsync failed: \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
        }
    }
}
