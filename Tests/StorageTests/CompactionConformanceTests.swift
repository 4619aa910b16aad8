import AuctionCore
import Storage
import TestSupport
import Testing

/// Compaction of an archived lot's live log, on both backends: nothing is lost (the lot loads the
/// same, the archive holds the history), nothing is skipped silently (the feed's horizon refuses a
/// cursor from before it), and nothing is taken from a webhook endpoint that has yet to be handed it.
@Suite struct CompactionConformanceTests {
    typealias Logs = EventStoreConformanceTests
    static let shard = ShardID(7)

    static func archived(_ id: String, seq: Int64) -> AuctionRecord {
        var record = ArchiveStoreConformanceTests.record(id, hammer: nil, endedAt: 0)
        record.seq = seq
        return record
    }

    @Test(arguments: Backend.allCases)
    func compaction_keepsTheLot_movesTheFeedHorizon_andWaitsForWebhooks(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let epoch = try await store.acquire(shard: Self.shard, node: Logs.node1).epoch
            let lot = AuctionID(rawValue: "k")!
            let neighbour = AuctionID(rawValue: "o")!
            let (events, auction) = Logs.log(lot, bids: 5)
            let (neighbourEvents, _) = Logs.log(neighbour, bids: 1)
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: lot, shard: Self.shard, epoch: epoch, firstSeq: 1, events: Array(events[..<3]))
                ]))
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: lot, shard: Self.shard, epoch: epoch, firstSeq: 4, events: Array(events[3...])),
                    .init(auction: neighbour, shard: Self.shard, epoch: epoch, firstSeq: 1, events: neighbourEvents),
                ]))
            let feed = try await FeedConformanceTests.follow(other, limit: 100, expected: 8)
            #expect(feed.count == 8)
            let before = try await store.load(lot).restore(lot)
            #expect(before == auction)
            let archivedAt = Timestamp(millisecondsSinceEpoch: 5)
            #expect(try await store.compactionCandidates(archivedBefore: archivedAt, limit: 10).isEmpty)

            // The archive has the lot through seq 5 only: nothing goes.
            #expect(try await store.archive(Self.archived("k", seq: 5), at: archivedAt))
            #expect(try await other.compact(lot, keeping: auction) == .archiveBehind)
            #expect(try await store.archive(Self.archived("k", seq: 6), at: archivedAt))
            #expect(
                try await store.compactionCandidates(archivedBefore: archivedAt.advanced(by: .seconds(1)), limit: 10)
                    == [lot])
            // An endpoint still at the start of the feed holds compaction back.
            let endpoint = WebhookEndpoint(
                id: "wh-1", url: "http://127.0.0.1:9/hook", types: ["bid_placed"], secret: "s", createdAt: archivedAt,
                cursor: .start)
            #expect(try await store.createWebhookEndpoint(endpoint))
            #expect(try await other.compact(lot, keeping: auction) == .webhooksBehind)
            #expect(try await store.events(of: lot, after: 0, limit: 100).count == 6)
            _ = try await store.rewindWebhookCursor(of: "wh-1", to: feed.last!.cursor)

            #expect(try await other.compact(lot, keeping: auction) == .compacted(removed: 5))
            // Asking for what went is answered as such, not as a gap (or a corrupt log).
            await #expect(throws: StorageError.compacted(auction: lot, keptFrom: 6)) {
                _ = try await other.events(of: lot, after: 0, limit: 100)
            }
            await #expect(throws: StorageError.compacted(auction: lot, keptFrom: 6)) {
                _ = try await store.events(of: lot, after: 4, limit: 100)
            }
            #expect(try await store.events(of: lot, after: 5, limit: 100).map(\.seq) == [6])
            // Read with other logs, a compacted one never passes for a whole log from seq 1.
            #expect(try await store.logs(of: [lot], through: 100).allSatisfy { $0.seq >= 6 })
            #expect(try await store.load(lot).restore(lot) == auction, "the same lot, from its snapshot")
            #expect(
                try await store.compactionCandidates(archivedBefore: archivedAt.advanced(by: .seconds(1)), limit: 10)
                    .isEmpty)
            #expect(try await store.archivedAuction(lot) == Self.archived("k", seq: 6), "the history stays archived")

            // The feed: from the start, what is kept; from a cursor before the horizon, a refusal.
            let kept = try await store.feed(after: .start, limit: 100).entries
            #expect(kept.map { "\($0.event.auction.rawValue)#\($0.event.seq)" } == ["k#6", "o#1", "o#2"])
            let lotEntries = feed.filter { $0.event.auction == lot }
            let horizon = lotEntries[4].cursor
            for expired in lotEntries.prefix(4).map(\.cursor) {
                await #expect(throws: StorageError.feedCursorExpired(expired, horizon: horizon)) {
                    _ = try await other.feed(after: expired, limit: 10)
                }
            }
            let fromHorizon = try await other.feed(after: horizon, limit: 100).entries
            #expect(fromHorizon == Array(feed.drop { $0.cursor <= horizon }))

            // Webhooks cannot be sent back before the horizon either.
            await #expect(throws: StorageError.feedCursorExpired(lotEntries[1].cursor, horizon: horizon)) {
                _ = try await store.rewindWebhookCursor(of: "wh-1", to: lotEntries[1].cursor)
            }
            var late = endpoint
            late.id = "wh-2"
            late.cursor = lotEntries[0].cursor
            await #expect(throws: StorageError.feedCursorExpired(lotEntries[0].cursor, horizon: horizon)) {
                _ = try await store.createWebhookEndpoint(late)
            }
            #expect(try await store.rewindWebhookCursor(of: "wh-1", to: .start)?.cursor == .start)
            _ = try await store.deleteWebhookEndpoint("wh-1")

            // The log goes on after compaction (a refund after the end, here one more event), and is
            // compacted again once archived through it.
            var grown = auction
            let (more, _) = Logs.log(lot, bids: 6)
            try grown.apply(more[6])
            try await store.append(
                AppendBatch(entries: [
                    .init(auction: lot, shard: Self.shard, epoch: epoch, firstSeq: 7, events: [more[6]])
                ]
                ))
            #expect(try await store.load(lot).restore(lot) == grown)
            #expect(try await other.compact(lot, keeping: grown) == .archiveBehind, "the archive is at 6")
            #expect(try await store.archive(Self.archived("k", seq: 7), at: archivedAt))
            #expect(try await other.compact(lot, keeping: grown) == .compacted(removed: 1))
            #expect(try await store.events(of: lot, after: 6, limit: 100).map(\.seq) == [7])
            await #expect(throws: StorageError.compacted(auction: lot, keptFrom: 7)) {
                _ = try await store.events(of: lot, after: 5, limit: 100)
            }
            #expect(try await store.load(lot).restore(lot) == grown)
        }
    }
}
