@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import Testing

/// Appends batches `from..<from+count` of `generator`, one event (so one record) each.
func appendSingleEvents(_ queue: Queue, _ generator: EventGenerator, from: Int = 0, count: Int) async throws {
    for batch in from..<(from + count) { _ = try await queue.append(generator.batch(batch, count: 1)) }
}

/// Every event id in `records`, in order.
func eventIDs(_ records: [StoredRecord]) throws -> [String] {
    try records.flatMap { stored in
        try stored.record.events().map { line in
            let text = String(buffer: line)
            guard let fields = generatedEventFields(text) else { throw TestFailure("not a generated event: \(text)") }
            return fields.id
        }
    }
}

/// All records of a queue, read page by page without leasing.
func allRecords(_ queue: Queue) throws -> RecordPage {
    var all = RecordPage(records: [], corrupt: [], nextSequence: 0)
    var next: UInt64 = 0
    while true {
        let page = try queue.peek(from: next, maxRecords: 1000)
        all.records += page.records
        all.corrupt += page.corrupt
        if page.records.isEmpty && page.corrupt.isEmpty { return all }
        next = page.nextSequence
    }
}

/// Opens a queue with a logger that records instead of printing.
func openQueue(at path: String, configuration: QueueConfiguration = QueueConfiguration(),
               logs: RecordingLogHandler.Store = RecordingLogHandler.Store()) throws -> Queue {
    try Queue.open(at: path, configuration: configuration, logger: logs.logger())
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The code of the QueueError thrown by `body`, or nil if it did not throw.
func queueErrorCode(_ body: () async throws -> Void) async -> QueueError.Code? {
    do {
        try await body()
        return nil
    } catch let error as QueueError {
        return error.code
    } catch {
        Issue.record("expected a QueueError, got \(error)")
        return nil
    }
}
