import AuctionCore
import Storage
import TestSupport
import Testing

/// Webhook endpoints and their fenced cursors, on both backends.
@Suite struct WebhookStoreConformanceTests {
    static let shard = ShardID(11)

    static func endpoint(_ id: String, cursor: FeedCursor = .start) -> WebhookEndpoint {
        WebhookEndpoint(
            id: id, url: "https://example.test/\(id)", types: ["bid_placed", "auction_closed"], secret: "whsec_\(id)",
            createdAt: Timestamp(millisecondsSinceEpoch: 1_000), cursor: cursor)
    }

    @Test(arguments: Backend.allCases)
    func endpoints_areKept_once_andDeletedWithTheirLog(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            #expect(try await store.createWebhookEndpoint(Self.endpoint("wh-a")))
            #expect(try await !other.createWebhookEndpoint(Self.endpoint("wh-a")), "an id is registered once")
            #expect(try await store.createWebhookEndpoint(Self.endpoint("wh-b")))
            #expect(try await other.webhookEndpoints().map(\.id) == ["wh-a", "wh-b"])
            let a = try #require(try await other.webhookEndpoint("wh-a"))
            #expect(a == Self.endpoint("wh-a"))
            let delivery = WebhookDelivery(
                endpoint: "wh-a", cursor: FeedCursor(transaction: 0, position: 3), auction: AuctionID(rawValue: "lot")!,
                seq: 2, type: "bid_placed", attempt: 1, outcome: .failed, status: 500, error: "HTTP 500",
                at: Timestamp(millisecondsSinceEpoch: 5_000), node: "node-1")
            try await store.recordWebhookDelivery(delivery)
            var second = delivery
            second.attempt = 2
            second.outcome = .delivered
            second.status = 200
            second.error = nil
            second.at = Timestamp(millisecondsSinceEpoch: 9_000)
            try await store.recordWebhookDelivery(second)
            #expect(try await other.webhookDeliveries(of: "wh-a", limit: 10) == [second, delivery], "newest first")
            #expect(try await other.webhookDeliveries(of: "wh-a", limit: 1) == [second])
            try await store.pruneWebhookDeliveries(before: Timestamp(millisecondsSinceEpoch: 6_000))
            #expect(try await other.webhookDeliveries(of: "wh-a", limit: 10) == [second])
            #expect(try await store.deleteWebhookEndpoint("wh-a"))
            #expect(try await !store.deleteWebhookEndpoint("wh-a"))
            #expect(try await other.webhookEndpoint("wh-a") == nil)
            #expect(try await other.webhookDeliveries(of: "wh-a", limit: 10).isEmpty)
            try await store.recordWebhookDelivery(delivery)
            #expect(try await other.webhookDeliveries(of: "wh-a", limit: 10).isEmpty, "no log for an endpoint gone")
        }
    }

    @Test(arguments: Backend.allCases)
    func theCursor_movesOnlyUnderTheCurrentLeaseAndGeneration(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            #expect(try await store.createWebhookEndpoint(Self.endpoint("wh-f")))
            let mine = try await store.acquire(shard: Self.shard, node: NodeID(rawValue: "node-1")!)
            let forward = FeedCursor(transaction: 0, position: 5)
            #expect(
                try await store.advanceWebhookCursor(
                    of: "wh-f", to: forward, generation: 0, shard: Self.shard, epoch: mine.epoch))
            #expect(try await other.webhookEndpoint("wh-f")?.cursor == forward)

            // Another node takes the shard: the old holder's moves are refused.
            let theirs = try await other.acquire(shard: Self.shard, node: NodeID(rawValue: "node-2")!)
            let stale = FeedCursor(transaction: 0, position: 9)
            #expect(
                try await !store.advanceWebhookCursor(
                    of: "wh-f", to: stale, generation: 0, shard: Self.shard, epoch: mine.epoch))
            #expect(try await other.webhookEndpoint("wh-f")?.cursor == forward)

            // A replay moves the cursor back and bumps the generation: a move under the old one is
            // refused, so the deliverer reloads and starts again from the replayed cursor.
            let replayed = try #require(try await store.rewindWebhookCursor(of: "wh-f", to: .start))
            #expect(replayed.cursor == .start)
            #expect(replayed.generation == 1)
            #expect(
                try await !other.advanceWebhookCursor(
                    of: "wh-f", to: stale, generation: 0, shard: Self.shard, epoch: theirs.epoch))
            #expect(
                try await other.advanceWebhookCursor(
                    of: "wh-f", to: stale, generation: 1, shard: Self.shard, epoch: theirs.epoch))
            #expect(try await store.webhookEndpoint("wh-f")?.cursor == stale)
            #expect(try await store.rewindWebhookCursor(of: "nothing-here", to: .start) == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func theFeedHead_isTheCursorOfTheNewestEvent(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            #expect(try await store.feedHead() == .start)
            let epoch = try await store.acquire(
                shard: EventStoreConformanceTests.shard, node: EventStoreConformanceTests.node1
            )
            .epoch
            for id in ["h-1", "h-2"].map({ AuctionID(rawValue: $0)! }) {
                try await store.append(
                    AppendBatch(entries: [
                        .init(
                            auction: id, shard: EventStoreConformanceTests.shard, epoch: epoch, firstSeq: 1,
                            events: EventStoreConformanceTests.log(id, bids: 1).events)
                    ]))
            }
            let all = try await FeedConformanceTests.follow(store, limit: 10, expected: 4)
            try await eventually("the head reaches the newest event") { try await store.feedHead() == all.last?.cursor }
            #expect(try await store.feed(after: store.feedHead(), limit: 10).entries.isEmpty)
        }
    }
}
