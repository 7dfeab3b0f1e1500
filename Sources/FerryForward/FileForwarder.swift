package import FerryPipeline
package import FerryQueue
import FerryWire
import FoundationEssentials
package import Logging
import NIOCore
package import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Settings of the `file` output.
package struct FileOutputConfiguration: Sendable, Hashable {
    /// Directory of the NDJSON files; made if missing.
    package var path: String
    /// A new file is started once the current one holds this many bytes. Default 256 MiB.
    package var rotateBytes: Int

    /// Retention: at most this many files are kept; the oldest go first. nil keeps every file.
    package var maxFiles: Int?
    /// Retention: files last written longer ago than this (seconds) are deleted. nil keeps every file.
    package var maxAgeSeconds: Int64?

    package init(path: String, rotateBytes: Int = 256 << 20, maxFiles: Int? = nil, maxAgeSeconds: Int64? = nil) {
        self.path = path
        self.rotateBytes = rotateBytes
        self.maxFiles = maxFiles
        self.maxAgeSeconds = maxAgeSeconds
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
    private let idleWait: Duration

    /// The output of the queue's default consumer (tests, tools).
    package convenience init(queue: Queue, configuration: FileOutputConfiguration, logger: Logger = Logger(label: "ferry.output.file"),
                             idleWait: Duration = Consumer.idleWait) throws(ConfigurationError) {
        try self.init(consumer: queue.defaultConsumer, configuration: configuration, logger: logger, idleWait: idleWait)
    }

    /// An output that delivers what `consumer` (its own cursor in the queue) has not settled. With nothing to
    /// deliver it waits for records at most `idleWait` before it looks again (`Consumer.waitForRecords`).
    package init(consumer: Consumer, configuration: FileOutputConfiguration, logger: Logger = Logger(label: "ferry.output.file"),
                 idleWait: Duration = Consumer.idleWait) throws(ConfigurationError) {
        do {
            try FileManager.default.createDirectory(atPath: configuration.path, withIntermediateDirectories: true)
        } catch {
            throw ConfigurationError("output.file.path \(configuration.path) cannot be made (\(error)); choose a writable directory", code: .unusable)
        }
        self.consumer = consumer
        self.configuration = configuration
        self.logger = logger
        self.idleWait = idleWait
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
            let token = consumer.queue.waitToken
            let lease = try consumer.lease(maxRecords: 1024, maxBytes: min(8 << 20, max(configuration.rotateBytes / 8, 1)))
            if lease.isEmpty {
                await consumer.waitForRecords(since: token, timeout: idleWait)
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
                switch try resume(placement, output, &file) {
                case .whole:
                    try await consumer.acknowledge(good)
                    continue
                case .atItsPlace:
                    break
                case .elsewhere(let offset):
                    // Its place is gone: the note says where it goes now, before it is written there.
                    var moved = placement
                    moved.offset = offset
                    moved.length = UInt64(output.readableBytes)
                    _ = try await consumer.renote(startingAt: first, note: moved.encoded)
                }
            } else {
                if file == nil || file!.size >= configuration.rotateBytes {
                    if let open = file { close(open.fd) }
                    file = try openFile(named: first)
                }
                let placement = Placement(file: file!.name, offset: UInt64(file!.size), length: UInt64(output.readableBytes))
                if !(try await consumer.remember(good, note: placement.encoded)) {
                    logger.info("file output batch not remembered (it has gaps or overlaps a remembered one): written at least once", metadata: ["ferry.output.first": "\(first)"])
                }
            }
            let offset = file!.size
            do {
                try write(output, to: file!.fd)
            } catch {
                // Bytes whose write or fsync failed are never trusted later (Linux marks pages clean after a
                // failed fsync): cut them off, best effort, so that a restart writes the batch again.
                _ = ftruncate(file!.fd, off_t(offset))
                close(file!.fd)
                file = nil
                throw error
            }
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

    /// What a restart found of a remembered batch in its file.
    private enum Found {
        /// The file holds it whole, fsynced now: acknowledge it, write nothing.
        case whole
        /// The caller writes it to `file`, whose end is the batch's place (cut back to it if needed).
        case atItsPlace
        /// The caller writes it to `file` at `offset`, its end, which is not the remembered place (the file
        /// is gone or shorter than before): the note is updated first.
        case elsewhere(offset: UInt64)
    }

    /// Finds the remembered batch `placement`, rebuilt as `output`, in its file and makes `file` that file.
    /// Bytes at and after the batch's offset are the batch's own (the file output only appends, and a
    /// remembered batch is the last thing it wrote), so cutting them off loses nothing.
    private func resume(_ placement: Placement, _ output: ByteBuffer, _ file: inout OpenFile?) throws -> Found {
        if let open = file, open.name != placement.file {
            close(open.fd)
            file = nil
        }
        let path = self.path(placement.file)
        if file == nil {
            let fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else {
                // Gone (deleted by hand, or never made): the batch is written again, to a new file of that name.
                logger.warning("file output: the file of a batch that was being written is gone; the batch is written again", metadata: [
                    "ferry.output.file": "\(path)", "ferry.output.error": "\(String(cString: strerror(errno)))",
                ])
                file = try openFile(named: placement.file)
                return .elsewhere(offset: UInt64(file!.size))
            }
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw ConfigurationError("cannot read the size of \(path): \(reason); the events stay queued", code: .unusable)
            }
            file = OpenFile(fd: fd, name: placement.file, size: Int(info.st_size))
        }
        let size = UInt64(file!.size)
        if size < placement.offset {
            logger.warning("file output: a file is shorter than before the restart (cut by hand?); the batch is appended", metadata: [
                "ferry.output.file": "\(path)", "ferry.output.size": "\(size)", "ferry.output.offset": "\(placement.offset)",
            ])
            return .elsewhere(offset: size)
        }
        if size >= placement.offset + placement.length {
            // Records dropped since (drop_oldest) change the rebuilt bytes: then the length decides alone.
            let same = try placement.length != UInt64(output.readableBytes) || (try holds(output, at: placement.offset, in: file!.fd))
            if same {
                // Written, but perhaps never fsynced (killed between the write and the fsync): fsync now.
                guard fdatasync(file!.fd) == 0 else {
                    throw ConfigurationError("file output fsync of \(path) failed: \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
                }
                logger.info("file output: a batch written before the restart is in its file whole; not written again", metadata: [
                    "ferry.output.file": "\(path)", "ferry.output.offset": "\(placement.offset)", "ferry.output.bytes": "\(placement.length)",
                ])
                return .whole
            }
            logger.warning("file output: a batch's place in its file holds other bytes (a power cut?); cutting them off and writing the batch again", metadata: [
                "ferry.output.file": "\(path)", "ferry.output.offset": "\(placement.offset)",
            ])
        } else if size == placement.offset {
            return .atItsPlace
        } else {
            logger.notice("file output: cut a half-written batch off its file; writing it again", metadata: [
                "ferry.output.file": "\(path)", "ferry.output.offset": "\(placement.offset)", "ferry.output.cut_bytes": "\(size - placement.offset)",
            ])
        }
        guard ftruncate(file!.fd, off_t(placement.offset)) == 0, fdatasync(file!.fd) == 0 else {
            throw ConfigurationError("cannot cut \(path) back to \(placement.offset) bytes: \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
        }
        file!.size = Int(placement.offset)
        return .atItsPlace
    }

    /// Whether `fd` holds exactly `output` at `offset`.
    private func holds(_ output: ByteBuffer, at offset: UInt64, in fd: Int32) throws -> Bool {
        var stored = [UInt8](repeating: 0, count: output.readableBytes)
        var read = 0
        while read < stored.count {
            let n = stored.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + read, $0.count - read, off_t(offset) + off_t(read)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                throw ConfigurationError("cannot read back what the file output wrote at offset \(offset): \(String(cString: strerror(errno))); the events stay queued", code: .unusable)
            }
            guard n > 0 else { return false }
            read += n
        }
        return output.withUnsafeReadableBytes { $0.elementsEqual(stored) }
    }

    private func path(_ name: UInt64) -> String {
        configuration.path + "/" + Self.fileName(name)
    }

    /// `ferry-00000000000000000042.ndjson`: the sequence zero-padded to 20 digits, so names sort in order.
    static func fileName(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return "ferry-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".ndjson"
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
        pruneFiles(keeping: sequence)
        return OpenFile(fd: fd, name: sequence, size: size)
    }

    /// Retention (`max_files`, `max_age`), applied whenever a file is opened: deletes the oldest files
    /// beyond `maxFiles` and those last written more than `maxAgeSeconds` ago, never the file `current`.
    /// Only files this output names (`ferry-<sequence>.ndjson`) are touched. Returns the names deleted.
    @discardableResult
    func pruneFiles(keeping current: UInt64, now: time_t = time(nil)) -> [String] {
        guard configuration.maxFiles != nil || configuration.maxAgeSeconds != nil else { return [] }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: configuration.path)) ?? [])
            .filter { $0.hasPrefix("ferry-") && $0.hasSuffix(".ndjson") && $0 != Self.fileName(current) }
            .sorted()  // zero-padded sequences: oldest first
        var deleted: [String] = []
        for (index, name) in names.enumerated() {
            let path = configuration.path + "/" + name
            // The current file counts as one of the `maxFiles` kept.
            let beyondCount = configuration.maxFiles.map { names.count - index >= $0 } ?? false
            var info = stat()
            let tooOld = configuration.maxAgeSeconds.map { age in stat(path, &info) == 0 && Int64(now - info.st_mtim.tv_sec) > age } ?? false
            guard beyondCount || tooOld else { continue }
            if unlink(path) == 0 {
                deleted.append(name)
                logger.notice("file output deleted an old file (retention)", metadata: [
                    "ferry.output.file": "\(path)", "ferry.output.reason": "\(beyondCount ? "max_files" : "max_age")",
                ])
            } else if errno != ENOENT {
                logger.warning("file output cannot delete an old file; check the directory's permissions", metadata: [
                    "ferry.output.file": "\(path)", "ferry.output.error": "\(String(cString: strerror(errno)))",
                ])
            }
        }
        return deleted
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
