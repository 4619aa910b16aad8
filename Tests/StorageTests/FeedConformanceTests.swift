import AuctionCore
import Logging
import PostgresNIO
import Storage
import TestSupport
import Testing

/// The commit-ordered feed (`EventStore.feed`): every committed event once, each auction's in seq
/// order, resumable from any cursor — on both backends, and on PostgreSQL while a transaction that
/// took an earlier position is still running.
@Suite struct FeedConformanceTests {
    typealias Logs = EventStoreConformanceTests
    static let shard = Logs.shard

    /// Every entry from `cursor` on, `limit` at a time, until `expected` entries arrived (PostgreSQL
    /// holds back events newer than any transaction still running on the server — other tests
    /// share it) or the deadline passed.
    static func follow(
        _ store: any EventStore, from cursor: FeedCursor = .start, limit: Int, expected: Int
    ) async throws -> [FeedEntry] {
        var cursor = cursor
        var entries: [FeedEntry] = []
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while entries.count < expected, ContinuousClock.now < deadline {
            let page = try await store.feed(after: cursor, limit: limit)
            entries += page.entries
            #expect(page.next >= cursor, "the cursor never goes back")
            cursor = page.next
            if page.entries.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        }
        return entries
    }

    /// What a consumer must be able to rely on: no event twice, cursors rising, each auction's
    /// events in seq order from 1 on.
    static func checkOrder(_ entries: [FeedEntry], sourceLocation: SourceLocation = #_sourceLocation) {
        let keys = entries.map { "\($0.event.auction.rawValue)#\($0.event.seq)" }
        #expect(Set(keys).count == keys.count, "an event came twice", sourceLocation: sourceLocation)
        #expect(
            zip(entries, entries.dropFirst()).allSatisfy { $0.cursor < $1.cursor }, "cursors rise",
            sourceLocation: sourceLocation)
        var last: [AuctionID: Int64] = [:]
        for entry in entries {
            let auction = entry.event.auction
            #expect(
                entry.event.seq == last[auction, default: 0] + 1, "\(auction) seq \(entry.event.seq) out of order",
                sourceLocation: sourceLocation)
            last[auction] = entry.event.seq
        }
    }

    @Test(arguments: Backend.allCases)
    func feed_listsEveryEventOnce_inCommitOrder_andResumesFromAnyCursor(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Logs.node1).epoch
            let ids = ["c", "a", "e"].map { AuctionID(rawValue: $0)! }
            let logs = ids.map { Logs.log($0, bids: 3).events }
            // c's first two events, a's first two and e's in one batch, then the rest of c and a.
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: ids[0], shard: Self.shard, epoch: epoch, firstSeq: 1, events: Array(logs[0][..<2]))
                ]))
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: ids[1], shard: Self.shard, epoch: epoch, firstSeq: 1, events: Array(logs[1][..<2])),
                    .init(auction: ids[2], shard: Self.shard, epoch: epoch, firstSeq: 1, events: logs[2]),
                ]))
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: ids[0], shard: Self.shard, epoch: epoch, firstSeq: 3, events: Array(logs[0][2...])),
                    .init(auction: ids[1], shard: Self.shard, epoch: epoch, firstSeq: 3, events: Array(logs[1][2...])),
                ]))
            let total = logs.map(\.count).reduce(0, +)
            let all = try await Self.follow(other, limit: 100, expected: total)
            #expect(all.count == total)
            Self.checkOrder(all)
            #expect(
                all.prefix(2).map(\.event.auction.rawValue) == ["c", "c"],
                "the first append's events come first")
            #expect(
                all.map(\.event.event) == all.map { logs[ids.firstIndex(of: $0.event.auction)!][Int($0.event.seq) - 1] }
            )

            // Paged two at a time from the start: the same entries.
            let paged = try await Self.follow(store, limit: 2, expected: total)
            #expect(paged == all)
            // From any entry's cursor, through its text form: exactly what follows it.
            for (index, entry) in all.enumerated() {
                let cursor = try #require(FeedCursor(entry.cursor.description))
                #expect(cursor == entry.cursor)
                let rest = try await store.feed(after: cursor, limit: 100)
                #expect(rest.entries == Array(all[(index + 1)...]))
            }
            let end = try await store.feed(after: all.last!.cursor, limit: 10)
            #expect(end.entries.isEmpty)
            #expect(end.next == all.last!.cursor, "an empty page keeps the cursor")
            // A cursor past anything issued is refused, not followed for ever.
            let last = all.last!.cursor
            for unknown in [
                FeedCursor(transaction: last.transaction, position: last.position + 1_000),
                FeedCursor(transaction: last.transaction + 1_000_000, position: last.position),
            ] {
                await #expect(throws: StorageError.unknownFeedCursor(unknown), "\(unknown)") {
                    _ = try await store.feed(after: unknown, limit: 10)
                }
            }
        }
    }

    /// A store whose events were written before the feed existed (schema version 7): migrating
    /// numbers them in the order they were recorded, and appends after that follow them.
    @Test(arguments: Backend.allCases)
    func migrating_numbersTheEventsWrittenBefore(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, raw in
            let epoch = try await store.acquire(shard: Self.shard, node: Logs.node1).epoch
            let ids = ["old-b", "old-a"].map { AuctionID(rawValue: $0)! }
            for id in ids {
                try await store.append(
                    AppendBatch(entries: [
                        .init(
                            auction: id, shard: Self.shard, epoch: epoch, firstSeq: 1,
                            events: Logs.log(id, bids: 2).events)
                    ]))
            }
            // Back to version 7: the feed's columns and counters gone, as before this version.
            switch backend {
            case .postgres:
                try await raw.execute("ALTER TABLE auction_events DROP COLUMN committed_tx, DROP COLUMN position")
                try await raw.execute("DROP SEQUENCE auction_event_positions")
            case .sqlite:
                try await raw.execute("DROP INDEX auction_events_in_commit_order")
                try await raw.execute("ALTER TABLE auction_events DROP COLUMN position")
                try await raw.execute("DROP TABLE event_positions")
            }
            try await raw.execute("DELETE FROM artpay_schema_migrations WHERE version = 8")
            try await store.migrate()
            let later = AuctionID(rawValue: "new")!
            try await other.append(
                AppendBatch(entries: [
                    .init(
                        auction: later, shard: Self.shard, epoch: epoch, firstSeq: 1,
                        events: Logs.log(later, bids: 1).events)
                ]))
            let all = try await Self.follow(store, limit: 100, expected: 8)
            #expect(all.count == 8)
            Self.checkOrder(all)
            #expect(Set(all.prefix(6).map(\.event.auction)) == Set(ids), "the old events first")
            #expect(all.suffix(2).map(\.event.auction) == [later, later])
        }
    }

    /// Writers commit concurrently on their own connections while a reader follows the cursor a
    /// few events at a time: when they are done, the reader has every event exactly once.
    @Test(arguments: Backend.allCases)
    func feed_followedWhileWritersRace_skipsNothingAndRepeatsNothing(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Logs.node1).epoch
            let writers = 8
            let bids = 24
            let ids = (0..<writers).map { AuctionID(rawValue: "race-\($0)")! }
            let logs = ids.map { Logs.log($0, bids: bids).events }
            let total = logs.map(\.count).reduce(0, +)
            let reader = Task { try await Self.follow(other, limit: 7, expected: total) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, id) in ids.enumerated() {
                    group.addTask {
                        for (offset, event) in logs[index].enumerated() {
                            try await store.append(
                                AppendBatch(entries: [
                                    .init(
                                        auction: id, shard: Self.shard, epoch: epoch, firstSeq: Int64(offset + 1),
                                        events: [event])
                                ]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seen = try await reader.value
            #expect(seen.count == total, "every event, once: \(seen.count) of \(total)")
            Self.checkOrder(seen)
        }
    }

    /// The case a reader that only keeps "the highest position seen" gets wrong: a transaction takes
    /// a position and stays open while a later one commits. The later event is not listed until the
    /// earlier transaction ends; then both come, the earlier first, and nothing is skipped.
    @Test func postgres_anEventOfARunningTransaction_holdsBackLaterOnes() async throws {
        let pg = try TestPostgres.fromEnvironment()
        try await pg.withFreshDatabase { client, _ in
            let store = PostgresEventStore(client: client)
            try await store.migrate()
            let epoch = try await store.acquire(shard: Self.shard, node: Logs.node1).epoch
            let slow = AuctionID(rawValue: "slow")!
            let fast = AuctionID(rawValue: "fast")!
            let (kind, payload) = EventCodec.encode(Logs.log(slow, bids: 0).events[0])
            let e = epoch.rawValue
            let s = Self.shard.rawValue
            try await client.withConnection { held in
                _ = try await held.query("BEGIN", logger: Logger(label: "test.feed"))
                _ = try await held.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT * FROM artpay_append(
                                ARRAY[\(s)], ARRAY[\(e)]::bigint[], ARRAY['slow'], ARRAY[0]::bigint[],
                                ARRAY['slow'], ARRAY[1]::bigint[], ARRAY[\(s)], ARRAY[\(e)]::bigint[], ARRAY['\(kind)'],
                                ARRAY[$p$\(payload)$p$], ARRAY[]::text[], ARRAY[]::bigint[], ARRAY[]::text[])
                            """), logger: Logger(label: "test.feed"))
                try await store.append(
                    AppendBatch(entries: [
                        .init(
                            auction: fast, shard: Self.shard, epoch: epoch, firstSeq: 1,
                            events: Logs.log(fast, bids: 0).events)
                    ]))
                // The fast event is committed, with a later position than the slow one: a naive
                // reader would list it now and never see the slow one.
                let meanwhile = try await store.feed(after: .start, limit: 10)
                #expect(meanwhile.entries.isEmpty, "nothing is listed while an older transaction runs")
                #expect(meanwhile.next == .start)
                _ = try await held.query("COMMIT", logger: Logger(label: "test.feed"))
            }
            let both = try await Self.follow(store, limit: 10, expected: 2)
            #expect(both.map(\.event.auction) == [slow, fast])
            #expect(both[0].cursor.position < both[1].cursor.position)
        }
    }

    @Test func cursorText_acceptsOnlyTheFormItIsGivenIn() {
        #expect(FeedCursor("0.0") == .start)
        #expect(FeedCursor("123.45") == FeedCursor(transaction: 123, position: 45))
        #expect(FeedCursor(transaction: 9, position: 7).description == "9.7")
        for bad in [
            "", "1", "1.", ".1", "1.2.3", "-1.2", "1.-2", "01.2", "1.02", " 1.2", "1.2 ", "a.b", "1,2",
            "99999999999999999999999.1", "1.99999999999999999999", "١.٢",
        ] {
            #expect(FeedCursor(bad) == nil, "\(bad)")
        }
    }
}
