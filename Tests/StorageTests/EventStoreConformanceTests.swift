import AuctionCore
import Storage
import TestSupport
import Testing

/// One suite, both backends: the contract of `EventStore` (see its doc comment).
@Suite struct EventStoreConformanceTests {
    static let node1 = NodeID(rawValue: "node-1")!
    static let node2 = NodeID(rawValue: "node-2")!
    static let shard = ShardID(7)
    static let otherShard = ShardID(8)

    /// A valid log for `auction`: created, then `bids` bids by alternating bidders.
    static func log(_ auction: AuctionID, bids: Int) -> (events: [AuctionEvent], auction: Auction) {
        var state = Auction(id: auction)
        var events: [AuctionEvent] = []
        let opens = Timestamp(millisecondsSinceEpoch: 1_000)
        let terms = AuctionTerms(
            auctionId: auction, sellerId: UserID(rawValue: "seller")!, title: "Lot",
            startingPrice: Money(minorUnits: 100, currency: .eur), opensAt: opens,
            closesAt: Timestamp(millisecondsSinceEpoch: 10_000_000), extensionWindow: .zero)
        func take(_ decision: Auction.Decision) {
            guard case .accept(let decided) = decision else { fatalError("\(decision)") }
            try! state.apply(contentsOf: decided)
            events += decided
        }
        take(state.decide(.create(terms), now: opens))
        for index in 0..<bids {
            let bidder = UserID(rawValue: index % 2 == 0 ? "alice" : "bob")!
            let bid = PlaceBid(
                bidId: BidID(rawValue: "bid-\(index)")!, bidderId: bidder,
                maximum: Money(minorUnits: 1_000 + Int64(index) * 500, currency: .eur))
            take(state.decide(.placeBid(bid), now: opens.advanced(by: .seconds(Int64(index + 1)))))
        }
        return (events, state)
    }

    @Test(arguments: Backend.allCases)
    func migrate_isIdempotentAndSafeConcurrently(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            try await store.migrate()
            async let first: Void = store.migrate()
            async let second: Void = other.migrate()
            _ = try await (first, second)
            let lease = try await store.lease(of: Self.shard)
            #expect(lease == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func acquire_bumpsTheEpochEachTime(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let first = try await store.acquire(shard: Self.shard, node: Self.node1)
            #expect(first.epoch == Epoch(1))
            let second = try await other.acquire(shard: Self.shard, node: Self.node2)
            #expect(second.epoch == Epoch(2))
            let elsewhere = try await store.acquire(shard: Self.otherShard, node: Self.node1)
            #expect(elsewhere.epoch == Epoch(1))
            let lease = try await store.lease(of: Self.shard)
            #expect(lease == ShardLease(shard: Self.shard, epoch: Epoch(2), owner: Self.node2))
        }
    }

    @Test(arguments: Backend.allCases)
    func append_thenRead_returnsTheEventsInOrder(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let id = AuctionID(rawValue: "a-1")!
            let (events, live) = Self.log(id, bids: 5)
            let lease = try await store.acquire(shard: Self.shard, node: Self.node1)
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: id, shard: Self.shard, epoch: lease.epoch, firstSeq: 1, events: Array(events[..<3]))
                ]))
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: id, shard: Self.shard, epoch: lease.epoch, firstSeq: 4, events: Array(events[3...]))
                ]))
            let stored = try await store.events(of: id, after: 0, limit: 100)
            #expect(stored.map(\.event) == events)
            #expect(stored.map(\.seq) == Array(1...6))
            #expect(stored.allSatisfy { $0.epoch == lease.epoch })
            let page = try await store.events(of: id, after: 4, limit: 1)
            #expect(page.map(\.seq) == [5])
            let loaded = try await store.load(id)
            #expect(try loaded.restore(id) == live)
            let unknown = AuctionID(rawValue: "nobody")!
            let nothing = try await store.load(unknown)
            #expect(try nothing.restore(unknown) == Auction(id: unknown))
        }
    }

    /// Several logs in one read: each from its first event through the bound, in seq order, grouped
    /// by auction; an unknown auction adds nothing.
    @Test(arguments: Backend.allCases)
    func logs_ofSeveralAuctions_fromTheFirstEventThroughTheBound(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let sizes = ["b": 0, "a": 5, "c": 9]
            var logs: [AuctionID: [AuctionEvent]] = [:]
            for (name, bids) in sizes {
                let id = AuctionID(rawValue: name)!
                logs[id] = Self.log(id, bids: bids).events
                try await store.append(
                    AppendBatch(entries: [
                        .init(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: logs[id]!)
                    ]))
            }
            let asked = ["c", "nobody", "a", "b"].map { AuctionID(rawValue: $0)! }
            let found = try await store.logs(of: asked, through: 4)
            let a = AuctionID(rawValue: "a")!
            let b = AuctionID(rawValue: "b")!
            let c = AuctionID(rawValue: "c")!
            // Each log's events together (the order of the logs is the store's).
            var runs: [String] = []
            for event in found where runs.last != event.auction.rawValue { runs.append(event.auction.rawValue) }
            #expect(runs.sorted() == ["a", "b", "c"], "each log in one run: \(runs)")
            #expect(found.filter { $0.auction == a }.map(\.seq) == [1, 2, 3, 4])
            #expect(found.filter { $0.auction == a }.map(\.event) == Array(logs[a]![..<4]))
            #expect(found.filter { $0.auction == b }.map(\.event) == logs[b]!)
            #expect(found.filter { $0.auction == c }.map(\.event) == Array(logs[c]![..<4]))
            #expect(found.allSatisfy { $0.epoch == epoch })
            let whole = try await store.logs(of: asked, through: 100)
            #expect(whole.count == logs.values.map(\.count).reduce(0, +))
            #expect(try await store.logs(of: [], through: 10).isEmpty)
        }
    }

    /// The debug switch does what it says, and only for the store it is set on: a stale writer's
    /// append goes through, leaving an epoch that goes back along seq (what the chaos checker finds).
    @Test(arguments: Backend.allCases)
    func fencingUnsafelyDisabled_letsAStaleWriterAppend(_ backend: Backend) async throws {
        try await withStore(backend, otherFencing: .unsafelyDisabled) { store, unfenced, _ in
            let id = AuctionID(rawValue: "a-unfenced")!
            let (events, _) = Self.log(id, bids: 3)
            let stale = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let current = try await store.acquire(shard: Self.shard, node: Self.node2).epoch
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: id, shard: Self.shard, epoch: current, firstSeq: 1, events: Array(events[..<2]))
                ]))
            let staleBatch = AppendBatch(entries: [
                .init(auction: id, shard: Self.shard, epoch: stale, firstSeq: 3, events: [events[2]])
            ])
            await #expect(throws: StorageError.self) { try await store.append(staleBatch) }
            try await unfenced.append(staleBatch)
            let epochs = try await store.events(of: id, after: 0, limit: 10).map(\.epoch)
            #expect(epochs == [current, current, stale])
        }
    }

    @Test(arguments: Backend.allCases)
    func logHeads_listWhatChangedAfterTheCursor_inCommitOrder(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let ids = ["c", "a", "e", "b", "d"].map { AuctionID(rawValue: $0)! }
            let logs = ids.map { Self.log($0, bids: 3).events }
            for (id, events) in zip(ids, logs) {
                try await store.append(
                    AppendBatch(entries: [
                        .init(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: Array(events[..<2]))
                    ]))
            }
            // PostgreSQL lists a head once no older transaction runs anywhere on the server (other
            // tests share it): wait until all five are listed.
            try await eventually("every head is listed") {
                try await store.logHeads(after: .start, limit: 10).heads.count == 5
            }
            let first = try await store.logHeads(after: .start, limit: 2)
            let rest = try await store.logHeads(after: first.next, limit: 10)
            #expect(first.heads.map(\.auction.rawValue) == ["c", "a"])
            #expect(rest.heads.map(\.auction.rawValue) == ["e", "b", "d"])
            #expect((first.heads + rest.heads).allSatisfy { $0.lastSeq == 2 })
            let nothing = try await store.logHeads(after: rest.next, limit: 10)
            #expect(nothing.heads.isEmpty)
            #expect(nothing.next == rest.next)

            // "a" grows again: it is listed once more, after the cursor, with its new end.
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: ids[1], shard: Self.shard, epoch: epoch, firstSeq: 3, events: Array(logs[1][2...]))
                ]))
            try await eventually("the grown log is listed again") {
                try await !store.logHeads(after: rest.next, limit: 10).heads.isEmpty
            }
            let later = try await store.logHeads(after: rest.next, limit: 10)
            #expect(later.heads == [LogHead(auction: ids[1], lastSeq: Int64(logs[1].count))])
            let everything = try await store.logHeads(after: .start, limit: 10)
            #expect(everything.heads.map(\.auction.rawValue) == ["c", "e", "b", "d", "a"])
        }
    }

    /// Writers commit concurrently while a reader follows the cursor: when they are done, the reader
    /// has seen every log's last head — no append was skipped because it committed out of order.
    @Test(arguments: Backend.allCases)
    func logHeads_followedWhileWritersRace_neverSkipAnAppend(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let writers = 6
            let appendsPerWriter = 25
            let ids = (0..<writers).map { AuctionID(rawValue: "race-\($0)")! }
            let logs = ids.map { Self.log($0, bids: appendsPerWriter).events }
            let reader = Task { () -> [AuctionID: Int64] in
                var seen: [AuctionID: Int64] = [:]
                var cursor = LogCursor.start
                let deadline = ContinuousClock.now.advanced(by: .seconds(60))
                while ContinuousClock.now < deadline {
                    let page = try await other.logHeads(after: cursor, limit: 7)
                    for head in page.heads { seen[head.auction] = max(seen[head.auction] ?? 0, head.lastSeq) }
                    cursor = page.next
                    let done = ids.enumerated().allSatisfy { seen[$0.element] == Int64(logs[$0.offset].count) }
                    if done { break }
                    if page.heads.isEmpty { await Task.yield() }
                }
                return seen
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, id) in ids.enumerated() {
                    group.addTask {
                        let events = logs[index]
                        try await store.append(
                            AppendBatch(entries: [
                                .init(
                                    auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1,
                                    events: Array(events[..<2]))
                            ]))
                        for seq in 3...events.count {
                            try await store.append(
                                AppendBatch(entries: [
                                    .init(
                                        auction: id, shard: Self.shard, epoch: epoch, firstSeq: Int64(seq),
                                        events: [events[seq - 1]])
                                ]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seen = try await reader.value
            for (index, id) in ids.enumerated() { #expect(seen[id] == Int64(logs[index].count), "\(id)") }
        }
    }

    @Test(arguments: Backend.allCases)
    func append_manyAuctionsInOneBatch_isAtomic(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let a = AuctionID(rawValue: "a")!
            let b = AuctionID(rawValue: "b")!
            let lease1 = try await store.acquire(shard: Self.shard, node: Self.node1)
            let lease2 = try await store.acquire(shard: Self.otherShard, node: Self.node1)
            let good = AppendEntry(
                auction: a, shard: Self.shard, epoch: lease1.epoch, firstSeq: 1, events: Self.log(a, bids: 1).events)
            let second = AppendEntry(
                auction: b, shard: Self.otherShard, epoch: lease2.epoch, firstSeq: 1,
                events: Self.log(b, bids: 2).events)
            // Another node takes the second shard: the whole batch is refused, the first entry too.
            _ = try await other.acquire(shard: Self.otherShard, node: Self.node2)
            await #expect(
                throws: StorageError.fenced([
                    .init(shard: Self.otherShard, writerEpoch: Epoch(1), currentEpoch: Epoch(2))
                ])
            ) {
                try await store.append(AppendBatch(entries: [good, second]))
            }
            let logA = try await store.events(of: a, after: 0, limit: 10)
            #expect(logA.isEmpty)
            let logB = try await store.events(of: b, after: 0, limit: 10)
            #expect(logB.isEmpty)
            var fresh = second
            fresh.epoch = Epoch(2)
            try await store.append(AppendBatch(entries: [good, fresh]))
            let logAAfter = try await store.events(of: a, after: 0, limit: 10)
            #expect(logAAfter.count == 2)
            let logBAfter = try await store.events(of: b, after: 0, limit: 10)
            #expect(logBAfter.count == 3)
        }
    }

    @Test(arguments: Backend.allCases)
    func append_refusesAStaleOrUnknownEpoch_andWritesNothing(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let id = AuctionID(rawValue: "a-1")!
            let events = Self.log(id, bids: 1).events
            await #expect(
                throws: StorageError.fenced([.init(shard: Self.shard, writerEpoch: Epoch(1), currentEpoch: nil)])
            ) {
                try await store.append(
                    AppendBatch(entries: [
                        .init(auction: id, shard: Self.shard, epoch: Epoch(1), firstSeq: 1, events: events)
                    ]))
            }
            let stale = try await store.acquire(shard: Self.shard, node: Self.node1)
            _ = try await other.acquire(shard: Self.shard, node: Self.node2)
            await #expect(
                throws: StorageError.fenced([.init(shard: Self.shard, writerEpoch: stale.epoch, currentEpoch: Epoch(2))]
                )
            ) {
                try await store.append(
                    AppendBatch(entries: [
                        .init(auction: id, shard: Self.shard, epoch: stale.epoch, firstSeq: 1, events: events)
                    ]))
            }
            let log = try await store.events(of: id, after: 0, limit: 10)
            #expect(log.isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func append_refusesAGapOrADuplicateSeq_andWritesNothing(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let id = AuctionID(rawValue: "a-1")!
            let events = Self.log(id, bids: 3).events
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            func entry(_ first: Int64, _ range: Range<Int>) -> AppendBatch {
                AppendBatch(entries: [
                    .init(auction: id, shard: Self.shard, epoch: epoch, firstSeq: first, events: Array(events[range]))
                ])
            }
            try await store.append(entry(1, 0..<2))
            await #expect(throws: StorageError.seqConflict(auction: id, expectedLastSeq: 3, actualLastSeq: 2)) {
                try await store.append(entry(4, 3..<4))
            }
            await #expect(throws: StorageError.seqConflict(auction: id, expectedLastSeq: 1, actualLastSeq: 2)) {
                try await store.append(entry(2, 1..<3))
            }
            let log = try await store.events(of: id, after: 0, limit: 10)
            #expect(log.map(\.seq) == [1, 2])
        }
    }

    @Test(arguments: Backend.allCases)
    func append_refusesMalformedBatches(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let id = AuctionID(rawValue: "a-1")!
            let events = Self.log(id, bids: 1).events
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let empty = AppendEntry(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: [])
            let zero = AppendEntry(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 0, events: events)
            let fine = AppendEntry(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: events)
            for batch in [[empty], [zero], [fine, fine]] {
                await #expect(throws: StorageError.self) { try await store.append(AppendBatch(entries: batch)) }
            }
            let log = try await store.events(of: id, after: 0, limit: 10)
            #expect(log.isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func snapshot_loadReturnsItAndOnlyTheLaterEvents(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            let id = AuctionID(rawValue: "a-1")!
            let (events, live) = Self.log(id, bids: 6)
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            let head = try Auction.replay(id: id, events: events[..<4])
            try await store.append(
                AppendBatch(entries: [
                    .init(
                        auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: Array(events[..<4]),
                        snapshot: head)
                ]))
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: id, shard: Self.shard, epoch: epoch, firstSeq: 5, events: Array(events[4...]))
                ]))
            let loaded = try await store.load(id)
            #expect(loaded.snapshot == head)
            #expect(loaded.tail.map(\.seq) == [5, 6, 7])
            #expect(try loaded.restore(id) == live)
        }
    }

    @Test(arguments: Backend.allCases)
    func malformedStoredRows_areReportedAsCorrupt(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, raw in
            let id = AuctionID(rawValue: "a-1")!
            let epoch = try await store.acquire(shard: Self.shard, node: Self.node1).epoch
            try await store.append(
                AppendBatch(entries: [
                    .init(
                        auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1, events: Self.log(id, bids: 0).events)
                ]))
            try await raw.execute(
                "INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload, recorded_at) VALUES ('a-1', 2, 7, 1, 'bid_accepted', '{\"bidId\": 5}', '2026-01-01')"
            )
            try await expectCorrupt(id, seq: 2) { _ = try await store.events(of: id, after: 0, limit: 10) }
            try await raw.execute(
                "INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload, recorded_at) VALUES ('b', 1, 7, 1, 'teleported', '{}', '2026-01-01')"
            )
            let other = AuctionID(rawValue: "b")!
            try await expectCorrupt(other, seq: 1, mentioning: "teleported") { _ = try await store.load(other) }
            try await raw.execute(
                "INSERT INTO auction_snapshots (auction_id, seq, state, taken_at) VALUES ('c', 3, '{\"id\": 1}', '2026-01-01')"
            )
            let third = AuctionID(rawValue: "c")!
            try await expectCorrupt(third, seq: 3) { _ = try await store.load(third) }
        }
    }
}

func expectCorrupt(
    _ auction: AuctionID, seq: Int64, mentioning text: String = "", sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async throws {
    do {
        try await body()
        Issue.record("expected a corrupt-record error", sourceLocation: sourceLocation)
    } catch let error as StorageError {
        guard case .corruptRecord(auction, seq, let reason) = error, text.isEmpty || reason.contains(text) else {
            Issue.record("expected corruptRecord(\(auction), \(seq)), got \(error)", sourceLocation: sourceLocation)
            return
        }
    }
}
