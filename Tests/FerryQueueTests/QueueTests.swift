@testable import FerryQueue
import FerryTestSupport
import FerryWire
import Foundation
import NIOCore
import Synchronization
import Testing

@Suite struct QueueAppendAndLeaseTests {
    let generator = EventGenerator(prefix: "q")

    @Test func appendedEventsAreReadBackInOrder() async throws {
        try await withTemporaryQueue { queue, _ in
            var expected: [String] = []
            var last: UInt64 = 0
            for batch in 0..<5 {
                let receipt = try await queue.append(generator.batch(batch, count: batch + 1))
                #expect(receipt.duplicate == false)
                #expect(try #require(receipt.firstSequence) > last)
                last = try #require(receipt.lastSequence)
                expected += (0...batch).map { generator.id(batch: batch, index: $0) }
            }
            let page = try queue.peek()
            #expect(page.corrupt.isEmpty)
            #expect(try eventIDs(page.records) == expected)
            let stats = queue.stats
            #expect(stats.records == 5)
            #expect(stats.events == 15)
            #expect(stats.appendedEvents == 15)
            #expect(stats.bytes == UInt64(page.records.reduce(0) { $0 + $1.record.storedSize }))
            #expect(stats.firstSequence == page.records.first?.sequence)
            #expect(stats.oldestCreatedAt != nil)
        }
    }

    @Test func concurrentAppendsShareCommitsAndAllArrive() async throws {
        try await withTemporaryQueue { queue, _ in
            let tasks = 32, perTask = 20
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<tasks {
                    group.addTask {
                        let g = EventGenerator(prefix: "c\(task)")
                        for batch in 0..<perTask { _ = try await queue.append(g.batch(batch, count: 3)) }
                    }
                }
                try await group.waitForAll()
            }
            let ids = try eventIDs(allRecords(queue).records)
            #expect(ids.count == tasks * perTask * 3)
            #expect(Set(ids).count == ids.count)
            #expect(queue.stats.appendedRecords == UInt64(tasks * perTask))
        }
    }

    @Test func aMultiRecordBatchGetsConsecutiveSequences() async throws {
        try await withTemporaryQueue { queue, _ in
            let batch = generator.batch(0, count: 100, maxRecordBytes: 1000)
            #expect(batch.records.count > 1)
            let receipt = try await queue.append(batch)
            let first = try #require(receipt.firstSequence), last = try #require(receipt.lastSequence)
            #expect(last - first + 1 == UInt64(batch.records.count))
        }
    }

    @Test func leaseHandsOutOldestFirstAndAcknowledgeDeletes() async throws {
        try await withTemporaryQueue { queue, _ in
            for batch in 0..<10 { _ = try await queue.append(generator.batch(batch, count: 2)) }
            let first = try queue.lease(maxRecords: 4)
            #expect(first.records.count == 4)
            #expect(try eventIDs(first.records).first == generator.id(batch: 0, index: 0))
            let second = try queue.lease(maxRecords: 100)
            #expect(second.records.count == 6)
            #expect(second.records.first!.sequence > first.records.last!.sequence)
            #expect(try queue.lease().isEmpty)

            #expect(try await queue.acknowledge(first) == 4)
            let stats = queue.stats
            #expect(stats.records == 6)
            #expect(stats.events == 12)
            #expect(stats.deliveredEvents == 8)
            #expect(stats.deliveredRecords == 4)
            // Acknowledging again deletes nothing and counts nothing.
            #expect(try await queue.acknowledge(first) == 0)
            #expect(queue.stats.deliveredEvents == 8)
        }
    }

    @Test func releasedRecordsAreLeasedAgainBeforeNewerOnes() async throws {
        try await withTemporaryQueue { queue, _ in
            try await appendSingleEvents(queue, generator, count: 6)
            let a = try queue.lease(maxRecords: 2)
            let b = try queue.lease(maxRecords: 2)
            queue.release(a)
            let again = try queue.lease(maxRecords: 3)
            #expect(again.records.map(\.sequence) == a.records.map(\.sequence) + [b.records.last!.sequence + 1])
        }
    }

    @Test func leaseRespectsTheByteLimitButAlwaysMakesProgress() async throws {
        try await withTemporaryQueue { queue, _ in
            for batch in 0..<5 { _ = try await queue.append(generator.batch(batch, count: 50)) }
            let one = try queue.lease(maxRecords: 100, maxBytes: 1)
            #expect(one.records.count == 1)
            let size = one.records[0].record.storedSize
            let two = try queue.lease(maxRecords: 100, maxBytes: 2 * size + 10)
            #expect(two.records.count == 2)
        }
    }

    @Test func aDuplicateBatchIDIsStoredOnceEvenAfterReopen() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var queue = try openQueue(at: dir.path)
        let first = try await queue.append(generator.batch(0, count: 3), batchID: "edge1/1-3")
        let retry = try await queue.append(generator.batch(0, count: 3), batchID: "edge1/1-3")
        let other = try await queue.append(generator.batch(1, count: 3), batchID: "edge1/4-6")
        #expect(first.duplicate == false && retry.duplicate == true && other.duplicate == false)
        #expect(retry.firstSequence == nil)
        queue.close()
        queue = try openQueue(at: dir.path)
        defer { queue.close() }
        #expect(try await queue.append(generator.batch(0, count: 3), batchID: "edge1/1-3").duplicate)
        #expect(queue.stats.events == 6)
        #expect(queue.stats.duplicateBatches == 2)
    }

    @Test func seenIDsArePrunedByCount() async throws {
        var configuration = QueueConfiguration()
        configuration.seenMaxCount = 3
        try await withTemporaryQueue(configuration: configuration) { queue, _ in
            for i in 0..<6 { _ = try await queue.append(generator.batch(i, count: 1), batchID: "a/\(i)-\(i)") }
            // Pruning rides a commit at most once a second; force one more commit after that second.
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(30)  // a full parallel run can make a commit take seconds
            var pruned = false
            var i = 100
            while clock.now < deadline && !pruned {
                _ = try await queue.append(generator.batch(i, count: 1), batchID: "b/\(i)-\(i)")
                i += 1
                pruned = try queue.environment.read { try $0.entries(queue.databases.seen) } <= 3
                if !pruned { try await Task.sleep(for: .milliseconds(50)) }  // next commit after the 1 s prune interval
            }
            #expect(pruned)
            // The oldest id was pruned, so it is stored again.
            #expect(try await queue.append(generator.batch(0, count: 1), batchID: "a/0-0").duplicate == false)
        }
    }
}

@Suite struct QueueDeadRecordTests {
    let generator = EventGenerator(prefix: "d")

    @Test func deadRecordsMoveRequeueAndPurgeWithCounters() async throws {
        try await withTemporaryQueue { queue, _ in
            for batch in 0..<4 { _ = try await queue.append(generator.batch(batch, count: 5)) }
            let lease = try queue.lease(maxRecords: 2)
            #expect(try await queue.moveToDead(lease.sequences, reason: "HTTP 400: bad field") == 2)
            var stats = queue.stats
            #expect(stats.records == 2 && stats.events == 10)
            #expect(stats.deadRecords == 2 && stats.deadEvents == 10 && stats.deadEventsTotal == 10)

            let dead = try queue.deadRecords()
            #expect(dead.map(\.sequence) == lease.sequences)
            #expect(dead.allSatisfy { $0.reason == "HTTP 400: bad field" })
            #expect(try dead[0].record.get() == lease.records[0].record)

            #expect(try await queue.requeueDead([dead[0].sequence]) == 1)
            stats = queue.stats
            #expect(stats.records == 3 && stats.deadRecords == 1 && stats.requeuedEvents == 5)
            // A requeued record comes after what was waiting.
            let rest = try queue.lease(maxRecords: 10)
            #expect(rest.records.last!.sequence > dead[0].sequence)
            #expect(try eventIDs([rest.records.last!]) == (0..<5).map { generator.id(batch: 0, index: $0) })

            #expect(try await queue.purgeDead() == 1)
            stats = queue.stats
            #expect(stats.deadRecords == 0 && stats.deadEvents == 0 && stats.deadBytes == 0 && stats.purgedEvents == 5)
        }
    }
}

@Suite struct QueueCapacityTests {
    let generator = EventGenerator(prefix: "cap")

    @Test func blockPolicyRefusesWhenFullAndStoresNothingOfTheBatch() async throws {
        let one = EventGenerator(prefix: "cap").batch(0, count: 20).storedBytes
        var configuration = QueueConfiguration(maxBytes: one * 5 + one / 2, whenFull: .block)
        configuration.seenMaxCount = 10
        try await withTemporaryQueue(configuration: configuration) { queue, _ in
            for batch in 0..<5 { _ = try await queue.append(generator.batch(batch, count: 20)) }
            let before = queue.stats
            let code = await queueErrorCode { _ = try await queue.append(generator.batch(99, count: 20)) }
            #expect(code == .full)
            let after = queue.stats
            #expect(after.records == before.records && after.events == before.events && after.appendedEvents == before.appendedEvents)
            // Deliver one record: room again.
            _ = try await queue.acknowledge(queue.lease(maxRecords: 1))
            _ = try await queue.append(generator.batch(99, count: 20))
            #expect(queue.stats.records == 5)
        }
    }

    /// `min_free`: the file system's own free space, asked with statvfs at each append. A floor above what
    /// the disk has refuses every append (even with drop_oldest, whose drops would free no disk); one below
    /// lets them through. Nothing stored is harmed by a refusal.
    @Test func appendsAreRefusedWhileTheFileSystemHasLessThanMinFree() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-min-free")
        defer { dir.remove() }
        var fs = statvfs()
        try #require(statvfs(dir.path, &fs) == 0)
        let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)

        var configuration = QueueConfiguration(whenFull: .dropOldest)
        configuration.minFree = .bytes(1 << 20)
        var queue = try openQueue(at: dir.path, configuration: configuration)
        _ = try await queue.append(generator.batch(0, count: 5))
        queue.close()

        for floor in [QueueConfiguration.MinFree.bytes(free + (1 << 40)), .percent(99.999)] {
            configuration.minFree = floor
            queue = try openQueue(at: dir.path, configuration: configuration)
            var message = ""
            let code = await queueErrorCode {
                do { _ = try await queue.append(generator.batch(1, count: 5)) } catch let error as QueueError { message = error.message; throw error }
            }
            #expect(code == .full, "\(floor)")
            #expect(message.contains("less than queue.min_free") && message.contains("free disk space there"), "\(message)")
            #expect(queue.stats.events == 5 && queue.stats.droppedEvents == 0, "a refusal harms nothing stored")
            queue.close()
        }

        configuration.minFree = .percent(0.001)
        queue = try openQueue(at: dir.path, configuration: configuration)
        defer { queue.close() }
        _ = try await queue.append(generator.batch(2, count: 5))
        #expect(queue.stats.events == 10)
    }

    /// `max_age`: records made longer ago are dropped at the next group commit, for every output,
    /// counted as dropped and logged; younger ones and dead records stay.
    @Test func recordsOlderThanMaxAgeAreDroppedCountedAndLogged() async throws {
        let dir = try TemporaryDirectory(prefix: "ferry-max-age")
        defer { dir.remove() }
        let hour: Int64 = 3_600_000
        let now = Mutex<Int64>(1_795_000_000_000)
        var configuration = QueueConfiguration()
        configuration.maxAgeMilliseconds = hour
        configuration.consumers = [ConsumerSettings(name: "a"), ConsumerSettings(name: "b")]
        let logs = RecordingLogHandler.Store()
        let queue = try Queue.open(at: dir.path, configuration: configuration, logger: logs.logger(), clock: { now.withLock { $0 } })
        defer { queue.close() }
        func batch(_ n: Int) -> EventBatch {
            var builder = RecordBuilder(createdAt: now.withLock { $0 })
            for i in 0..<10 { builder.append(line: Array(#"{"n":\#(n),"i":\#(i)}"#.utf8)) }
            return builder.finish()
        }
        for n in 0..<3 { _ = try await queue.append(batch(n)) }
        // Output a delivered the first record already: it is not counted against a.
        let a = try queue.consumer(named: "a")
        _ = try await a.acknowledge(a.lease(maxRecords: 1))
        now.withLock { $0 += hour - 1 }
        _ = try await queue.append(batch(3))
        #expect(queue.stats.records == 4, "not older than max_age yet")

        now.withLock { $0 += 2 }  // the first three are now older than an hour; the fourth is not
        _ = try await queue.append(batch(4))
        let stats = queue.stats
        #expect(stats.records == 2 && stats.events == 20)
        #expect(stats.droppedRecords == 3 && stats.droppedEvents == 30)
        #expect(stats.outputs.first { $0.name == "a" }?.droppedFullEvents == 20)
        #expect(stats.outputs.first { $0.name == "b" }?.droppedFullEvents == 30)
        let warning = logs.all.first { $0.message.contains("older than queue.max_age") }
        #expect(warning?.metadata["ferry.queue.dropped_records"] == "3")
        // What is left goes out, oldest first.
        let b = try queue.consumer(named: "b")
        #expect(try b.lease(maxRecords: 10).eventCount == 20)
    }

    @Test func dropOldestPolicyDeletesTheOldestAndCountsThem() async throws {
        let one = EventGenerator(prefix: "cap").batch(0, count: 20).storedBytes
        try await withTemporaryQueue(configuration: QueueConfiguration(maxBytes: one * 3 + one / 2, whenFull: .dropOldest)) { queue, _ in
            for batch in 0..<6 { _ = try await queue.append(generator.batch(batch, count: 20)) }
            let stats = queue.stats
            #expect(stats.records == 3)
            #expect(stats.droppedRecords == 3 && stats.droppedEvents == 60)
            #expect(stats.appendedEvents == 120 && stats.events == 60)
            let ids = try eventIDs(queue.peek().records)
            #expect(ids.first == generator.id(batch: 3, index: 0))
            #expect(ids.last == generator.id(batch: 5, index: 19))
        }
    }

    @Test func aBatchLargerThanTheQueueIsRefusedWithItsOwnCode() async throws {
        try await withTemporaryQueue(configuration: QueueConfiguration(maxBytes: 100)) { queue, _ in
            let code = await queueErrorCode { _ = try await queue.append(generator.batch(0, count: 50)) }
            #expect(code == .batchTooLarge)
            #expect(queue.stats.records == 0)
        }
    }

    @Test func lmdbMapFullIsAFullQueueAndHarmsNothingStored() async throws {
        var configuration = QueueConfiguration(maxBytes: 1 << 30)
        configuration.mapSizeOverride = 1 << 20  // LMDB's map fills long before max_bytes
        try await withTemporaryQueue(configuration: configuration) { queue, dir in
            var stored = 0
            var code: QueueError.Code?
            // Incompressible-ish events so that the map fills after a bounded number of appends.
            for batch in 0..<2000 {
                let lines = (0..<20).map { i in #"{"id":"m-b\#(batch)-e\#(i)","n":20,"r":"\#(UInt64.random(in: 0...UInt64.max))\#(UInt64.random(in: 0...UInt64.max))"}"# }
                do {
                    _ = try await queue.append(EventBatch(lines: lines.map { Array($0.utf8) }))
                    stored += 1
                } catch {
                    code = (error as? QueueError)?.code
                    break
                }
            }
            #expect(code == .full)
            #expect(stored > 0)
            #expect(queue.stats.records == stored)
            // Everything stored is still readable and intact, and deleting makes room again.
            let page = try allRecords(queue)
            #expect(page.corrupt.isEmpty && page.records.count == stored)
            _ = try await queue.acknowledge(page.records.prefix(stored / 2).map(\.sequence))
            _ = try await queue.append(generator.batch(0, count: 1))
            // The delete hit the full map, so the map grew (up to its bound, 4 × 1 MiB); the file did not:
            // LMDB (without MDB_WRITEMAP) extends data.mdb only by the pages it writes, so growing the map
            // does not take disk by itself.
            #expect(queue.stats.mapSize > 1 << 20, "the delete was expected to need a larger map")
            var file = stat()
            try #require(stat(dir.path + "/data.mdb", &file) == 0)
            #expect(Int(file.st_size) < 2 << 20, "data.mdb is \(file.st_size) bytes after the map grew to \(queue.stats.mapSize)")
            queue.close()
            let reopened = try openQueue(at: dir.path, configuration: configuration)
            defer { reopened.close() }
            #expect(reopened.stats.records == stored - stored / 2 + 1)
        }
    }

    @Test(.enabled(if: geteuid() == 0, "mounting a small tmpfs needs root"))
    func aFullDiskIsAFullQueueAndHarmsNothingStored() async throws {
        let mountPoint = try TemporaryDirectory(prefix: "ferry-enospc")
        defer { mountPoint.remove() }
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint.path]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "cannot mount a tmpfs here")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        let path = mountPoint.path + "/queue"
        let queue = try openQueue(at: path)
        var acknowledged: [String] = []
        var code: QueueError.Code?
        for batch in 0..<5000 {
            let lines = (0..<20).map { i in #"{"id":"s-b\#(batch)-e\#(i)","n":20,"r":"\#(UInt64.random(in: 0...UInt64.max))\#(UInt64.random(in: 0...UInt64.max))"}"# }
            do {
                _ = try await queue.append(EventBatch(lines: lines.map { Array($0.utf8) }))
                acknowledged += (0..<20).map { "s-b\(batch)-e\($0)" }
            } catch {
                code = error.code
                break
            }
        }
        #expect(code == .full)
        queue.close()
        let reopened = try openQueue(at: path)
        defer { reopened.close() }
        let page = try allRecords(reopened)
        #expect(page.corrupt.isEmpty)
        let ids = try page.records.flatMap { try $0.record.events().map { generatedEventFields(String(buffer: $0))!.id } }
        #expect(ids == acknowledged)
    }
}

@Suite struct QueueWaitTests {
    @Test func waitForAppendReturnsOnTheNextCommitOrTheTimeout() async throws {
        try await withTemporaryQueue { queue, _ in
            let clock = ContinuousClock()
            // Nothing appended: the wait ends by its timeout.
            let idle = await clock.measure { await queue.waitForAppend(timeout: .milliseconds(200)) }
            #expect(idle >= .milliseconds(200))
            // An append ends the wait long before its 30 s timeout. The waiter may register after an
            // append, so append (paced) until it has returned.
            let done = Mutex(false)
            let waiter = Task {
                let elapsed = await clock.measure { await queue.waitForAppend(timeout: .seconds(30)) }
                done.withLock { $0 = true }
                return elapsed
            }
            let deadline = clock.now + .seconds(10)
            while !done.withLock({ $0 }) && clock.now < deadline {
                _ = try await queue.append(EventGenerator(prefix: "w").batch(0, count: 1))
                try await Task.sleep(for: .milliseconds(20))  // pacing of the appends, not a wait for a condition
            }
            #expect(await waiter.value < .seconds(10))
        }
    }

    /// A consumer reads `waitToken` before it looks for records; any wake-up since then (an append, records
    /// given back, `wakeWaiters()` at the start of a stop) ends its wait at once, also one that came before
    /// the wait began: none is lost between the look and the wait.
    @Test func aWakeUpSinceTheTokenEndsTheWaitAtOnce() async throws {
        try await withTemporaryQueue { queue, _ in
            let clock = ContinuousClock()
            // Each wait could last 120 s; "at once" is judged with room for a loaded machine.
            func waited(since token: UInt64, timeout: Duration = .seconds(120)) async -> Duration {
                await clock.measure { await queue.waitForAppend(since: token, timeout: timeout) }
            }
            var token = queue.waitToken
            queue.wakeWaiters()
            #expect(await waited(since: token) < .seconds(60), "woken before the wait began")

            token = queue.waitToken
            _ = try await queue.append(EventGenerator(prefix: "g").batch(0, count: 1))
            #expect(await waited(since: token) < .seconds(60), "an append")

            let consumer = try queue.consumer(named: ConsumerSettings.defaultName)
            let lease = try consumer.lease(maxRecords: 10, maxBytes: 1 << 20)
            #expect(lease.records.count == 1)
            #expect(try consumer.lease(maxRecords: 10, maxBytes: 1 << 20).records.isEmpty, "all leased: nothing to take")
            token = queue.waitToken
            consumer.release(lease)
            #expect(await waited(since: token) < .seconds(60), "records given back")
            #expect(try consumer.lease(maxRecords: 10, maxBytes: 1 << 20).records.count == 1, "and leasable again")

            token = queue.waitToken
            #expect(await waited(since: token, timeout: .milliseconds(200)) >= .milliseconds(200), "no wake-up: it waits")
        }
    }

    @Test func waitForAppendEndsWhenItsTaskIsCancelled() async throws {
        try await withTemporaryQueue { queue, _ in
            let waiter = Task { await queue.waitForAppend(timeout: .seconds(60)) }
            waiter.cancel()
            let clock = ContinuousClock()
            let elapsed = await clock.measure { await waiter.value }
            // Well before its 60 s timeout; the margin is for a loaded 2-core machine running every suite
            // at once (9 s was seen), where the waiter's task may wait for a thread.
            #expect(elapsed < .seconds(30))
        }
    }
}

@Suite struct QueueLeaseLimitTests {
    @Test func leaseStopsAtTheEventLimitButAlwaysMakesProgress() async throws {
        try await withTemporaryQueue { queue, _ in
            for batch in 0..<5 { _ = try await queue.append(EventGenerator(prefix: "l").batch(batch, count: 300)) }
            let first = try queue.lease(maxRecords: 100, maxBytes: 1 << 30, maxEvents: 700)
            #expect(first.records.count == 2 && first.eventCount == 600)
            let tiny = try queue.lease(maxRecords: 100, maxBytes: 1 << 30, maxEvents: 10)
            #expect(tiny.records.count == 1 && tiny.eventCount == 300)
            queue.release(first)
            let again = try queue.lease(maxRecords: 100, maxBytes: 1 << 30, maxEvents: 900)
            #expect(again.records.map(\.sequence) == first.records.map(\.sequence) + [tiny.records[0].sequence + 1])
        }
    }
}
