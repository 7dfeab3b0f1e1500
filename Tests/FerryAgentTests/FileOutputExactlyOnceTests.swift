import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// Issue 20: a SIGKILL between the file output's fdatasync and the queue's acknowledgement wrote those
/// events again after the restart (200 duplicates in 60,000 events over 15 kills). Here a real `ferry`
/// with the file output is SIGKILLed 15 times under load; every acknowledged event must be in the files
/// exactly once, and no event twice.
@Suite(.serialized, .tags(.long)) struct FileOutputExactlyOnceTests {
    @Test(.tags(.long), .timeLimit(.minutes(8)))
    func fifteenSigkillsUnderLoadWriteEveryAcknowledgedEventOnce() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-file-once")
        defer { dir.remove() }
        let out = dir.appending("out")
        var acknowledged: [String] = []
        for cycle in 0..<15 {
            let ferry = FerryProcess(name: "once", dir: dir, extra: ["--output-file", out])
            defer { ferry.terminate() }
            try await ferry.start()
            let acked = Acknowledged()
            let clients = load(ferry.url, clients: 3, batches: 100_000, perRequest: 100, prefix: "k\(cycle)-", padding: 300, into: acked)
            // Load first, then the kill at a moment of its own in each cycle, while the output writes.
            let loaded = try await eventually(timeout: .seconds(30)) { acked.ids.withLock { $0.count } >= 1_500 }
            #expect(loaded, "cycle \(cycle): the load did not start")
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...400)))  // the kill's moment, not a wait for a condition
            ferry.terminate()  // SIGKILL
            clients.cancel()
            await clients.value
            acknowledged += acked.ids.withLock { $0 }
        }

        let last = FerryProcess(name: "once", dir: dir, extra: ["--output-file", out])
        defer { last.terminate() }
        try await last.start()
        let wanted = Set(acknowledged)
        let complete = try await eventually(timeout: .seconds(90)) { Set(try deliveredIDs(out).keys).isSuperset(of: wanted) }
        #expect(complete, "not every acknowledged event reached the files within 90 s")
        _ = await last.stop(signals: [SIGTERM], timeout: .seconds(35))

        let delivered = try deliveredIDs(out)
        let lost = wanted.subtracting(delivered.keys).count
        let duplicated = delivered.values.filter { $0 > 1 }.count
        let log = (try? String(contentsOfFile: dir.appending("once.log"), encoding: .utf8)) ?? ""
        let whole = log.components(separatedBy: "is in its file whole").count - 1
        let cut = log.components(separatedBy: "cut a half-written batch").count - 1
        print("file output, 15 SIGKILLs: \(wanted.count) events acknowledged, \(delivered.count) written, \(lost) lost, \(duplicated) duplicated; after the restarts \(whole) batches were found whole and \(cut) cut back")
        #expect(lost == 0, "\(lost) acknowledged events missing")
        #expect(duplicated == 0, "\(duplicated) events written more than once")
    }
}
