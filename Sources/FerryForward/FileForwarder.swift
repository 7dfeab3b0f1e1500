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
/// Exactly once, across crashes: before a batch is written, its file, offset and length are remembered
/// in the queue with its records (`Consumer.remember(_:note:)`, one group commit). A batch that goes
/// again after a restart is checked against its file first: a file that holds it whole is acknowledged
/// untouched; a file that holds part of it is cut back to the batch's offset and the batch written again;
/// nothing else ever truncates a file, so a reader tailing the archive sees a cut only where a crash left
/// half a batch. Where a batch cannot be remembered (a lease with gaps, after an output restart that
/// released records), it is written at least once, as before. A damaged record is moved to `dead`,
/// never written.
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

    /// The file being written: its descriptor, the sequence its name carries, its size.
    private struct OpenFile {
        let fd: Int32
        let name: UInt64
        var size: Int
    }

    package func run() async throws {
        var file: OpenFile?
        defer { if let file { close(file.fd) } }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Files rotate between leases, so a lease is kept small next to the rotation size.
            let lease = try consumer.lease(maxRecords: 1024, maxBytes: min(8 << 20, max(configuration.rotateBytes / 8, 1)))
            if lease.isEmpty {
                await consumer.waitForAppend(timeout: .seconds(1))
                continue
            }
            var output = ByteBuffer()
            var bad: [(UInt64, String)] = lease.corrupt.map { ($0.sequence, "damaged record: \($0.error.message)") }
            var good: [UInt64] = []
            for stored in lease.records {
                do {
                    var ndjson = try stored.record.decompressedPayload()
                    output.writeBuffer(&ndjson)
                    good.append(stored.sequence)
                } catch {
                    bad.append((stored.sequence, "record cannot be decoded: \(error.message)"))
                }
            }
            // Buried first: the batch remembered below holds exactly the records that are written.
            if !bad.isEmpty {
                _ = try await consumer.moveToDead(bad.map(\.0), reason: bad[0].1)
            }
            guard let first = good.first else { continue }

            // A batch going again after a crash: is it in its file already, whole or in part?
            if let remembered = try consumer.rememberedBatch(startingAt: first), let placement = Placement(remembered.note) {
                if try resume(placement, output, &file) {
                    try await consumer.acknowledge(good)
                    continue
                }
            } else {
                if file == nil || file!.size >= configuration.rotateBytes {
                    if let open = file { close(open.fd) }
                    file = try openFile(named: first)
                }
                let placement = Placement(file: file!.name, offset: UInt64(file!.size), length: UInt64(output.readableBytes))
                if !(try await consumer.remember(good, note: placement.encoded)) {
                    logger.debug("file output batch not remembered (gaps in the lease): written at least once", metadata: ["ferry.output.first": "\(first)"])
                }
            }
            try write(output, to: file!.fd)
            file!.size += output.readableBytes
            try await consumer.acknowledge(good)
        }
    }

    /// Where a remembered batch went: its file (by the sequence in its name), offset and length.
    struct Placement: Hashable {
        var file: UInt64
        var offset: UInt64
        var length: UInt64

        init(file: UInt64, offset: UInt64, length: UInt64) {
            self.file = file
            self.offset = offset
            self.length = length
        }

        /// Reads a note written by `encoded`; nil for any other note.
        init?(_ note: [UInt8]) {
            guard note.count == 25, note[0] == 1 else { return nil }
            func field(_ at: Int) -> UInt64 { note[at ..< at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
            self.init(file: field(1), offset: field(9), length: field(17))
        }

        /// Version 1, then file, offset and length as big-endian UInt64.
        var encoded: [UInt8] {
            var bytes: [UInt8] = [1]
            for value in [file, offset, length] { bytes += (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }
            return bytes
        }
    }

    /// Makes the remembered batch `placement`, rebuilt as `output`, whole in its file. Returns true when
    /// the file already held it (nothing written); false when the caller must write `output` to `file`,
    /// which then is that file, cut back to the batch's offset if it held part of the batch.
    private func resume(_ placement: Placement, _ output: ByteBuffer, _ file: inout OpenFile?) throws -> Bool {
        if let open = file, open.name != placement.file {
            close(open.fd)
            file = nil
        }
        if file == nil {
            let path = self.path(placement.file)
            let fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else {
                // Gone (deleted by hand, or never made): the batch is written again, to a new file.
                logger.warning("file output: the file of a batch that was being written is gone; the batch is written again", metadata: [
                    "ferry.output.file": "\(path)", "ferry.output.error": "\(String(cString: strerror(errno)))",
                ])
                file = try openFile(named: placement.file)
                return false
            }
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                close(fd)
                throw ConfigurationError("cannot read the size of \(path): \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
            }
            file = OpenFile(fd: fd, name: placement.file, size: Int(info.st_size))
        }
        let size = UInt64(file!.size)
        if size >= placement.offset + placement.length {
            if placement.length == UInt64(output.readableBytes), try !holds(output, at: placement.offset, in: file!.fd) {
                // Not what was written there: write the batch again rather than lose it.
                logger.warning("file output: a batch's place in its file holds other bytes; the batch is written again at the end", metadata: [
                    "ferry.output.file": "\(path(placement.file))", "ferry.output.offset": "\(placement.offset)",
                ])
                return false
            }
            logger.info("file output: a batch written before the restart is in its file whole; not written again", metadata: [
                "ferry.output.file": "\(path(placement.file))", "ferry.output.offset": "\(placement.offset)",
                "ferry.output.bytes": "\(placement.length)",
            ])
            return true
        }
        if size > placement.offset {
            // Part of the batch: cut it off, so that the batch is written once, whole.
            guard ftruncate(file!.fd, off_t(placement.offset)) == 0, fdatasync(file!.fd) == 0 else {
                throw ConfigurationError("cannot cut \(path(placement.file)) back to \(placement.offset) bytes: \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
            }
            logger.notice("file output: cut a half-written batch off its file; writing it again", metadata: [
                "ferry.output.file": "\(path(placement.file))", "ferry.output.offset": "\(placement.offset)",
                "ferry.output.cut_bytes": "\(size - placement.offset)",
            ])
            file!.size = Int(placement.offset)
        } else if size < placement.offset {
            logger.warning("file output: a file is shorter than before the restart (cut by hand?); the batch is appended", metadata: [
                "ferry.output.file": "\(path(placement.file))", "ferry.output.size": "\(size)", "ferry.output.offset": "\(placement.offset)",
            ])
        }
        return false
    }

    /// Whether `fd` holds exactly `output` at `offset`.
    private func holds(_ output: ByteBuffer, at offset: UInt64, in fd: Int32) throws -> Bool {
        var stored = [UInt8](repeating: 0, count: output.readableBytes)
        var read = 0
        while read < stored.count {
            let n = stored.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + read, $0.count - read, off_t(offset) + off_t(read)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            read += n
        }
        return output.withUnsafeReadableBytes { $0.elementsEqual(stored) }
    }

    private func path(_ name: UInt64) -> String {
        configuration.path + "/ferry-\(String(format: "%020llu", name)).ndjson"
    }

    private func openFile(named sequence: UInt64) throws -> OpenFile {
        let path = self.path(sequence)
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw ConfigurationError("cannot open \(path): \(String(cString: strerror(errno))); check output.file.path", code: .unusable)
        }
        var info = stat()
        let size = fstat(fd, &info) == 0 ? Int(info.st_size) : 0
        // Make the new file's directory entry durable too.
        let dir = open(configuration.path, O_RDONLY | O_DIRECTORY)
        if dir >= 0 { fsync(dir); close(dir) }
        logger.info("file output writes a new file", metadata: ["ferry.output.file": "\(path)"])
        return OpenFile(fd: fd, name: sequence, size: size)
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
