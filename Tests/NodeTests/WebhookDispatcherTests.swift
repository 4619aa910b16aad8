import AsyncHTTPClient
import AuctionCore
import AuctionRuntime
import Logging
import MetricsTestKit
import Node
import Storage
import TestSupport
import Testing

/// The webhook dispatcher on a real node, delivering over HTTP to real receivers.
@Suite(.serialized) struct WebhookDispatcherTests {
    static func bid(_ id: String, by bidder: String, _ maximum: Int64) -> AuctionCommand {
        .placeBid(
            PlaceBid(
                bidId: BidID(rawValue: id)!, bidderId: UserID(rawValue: bidder)!,
                maximum: Money(minorUnits: maximum, currency: .eur)))
    }

    /// A one-node cluster on a fresh store with a dispatcher whose retries come quickly, and a
    /// client that does not follow redirects.
    static func withDispatcher(
        requestTimeout: Duration = .seconds(10), metrics: TestMetrics = TestMetrics(),
        _ body: (ClusterNode, SQLiteEventStore) async throws -> Void
    ) async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 1, store: store, metrics: [metrics])
            try await cluster.converged()
            let node = cluster.nodes[0].node
            let http = HTTPClient(
                eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
            var settings = WebhookDispatcher.Settings()
            settings.scanInterval = .milliseconds(100)
            settings.pollInterval = .milliseconds(50)
            settings.requestTimeout = requestTimeout
            settings.retry = WebhookRetryPolicy(firstDelay: .milliseconds(50), maximumDelay: .milliseconds(200))
            var logger = Logger(label: "test.webhooks")
            logger.logLevel = .error
            let dispatcher = WebhookDispatcher(
                node: node, store: store, http: http, clock: SystemClock(), logger: logger, settings: settings)
            let running = Task { await dispatcher.run() }
            do {
                try await body(node, store)
            } catch {
                running.cancel()
                await cluster.stop()
                try? await http.shutdown()
                throw error
            }
            running.cancel()
            await cluster.stop()
            try await http.shutdown()
        }
    }

    static func register(
        _ receiver: WebhookReceiver, as id: String, types: [String] = [], in store: SQLiteEventStore
    ) async throws {
        #expect(
            try await store.createWebhookEndpoint(
                WebhookEndpoint(
                    id: id, url: receiver.url, types: types, secret: receiver.secret,
                    createdAt: SystemClock().now(), cursor: .start)))
    }

    @Test func everyWantedEvent_isDeliveredSigned_inOrder_afterTheEndpointFailedForAWhile() async throws {
        try await Self.withDispatcher { node, store in
            let receiver = try await WebhookReceiver.start(secret: "whsec_test_secret_one")
            defer { receiver.stop() }
            receiver.set(.fail(count: 3))
            try await Self.register(receiver, as: "wh-one", types: ["bid_placed", "auction_created"], in: store)
            let lots = ["wl-1", "wl-2"].map { AuctionID(rawValue: $0)! }
            for lot in lots {
                #expect(await node.submit(.create(ClusterNodeTests.terms(lot)), to: lot).value?.seq == 1)
            }
            for index in 0..<8 {
                let lot = lots[index % 2]
                let bidder = index % 4 < 2 ? "alice" : "bob"
                let accepted = await node.submit(
                    Self.bid("wb-\(index)", by: bidder, 2_000 + Int64(index) * 500), to: lot)
                #expect(accepted.value != nil, "\(accepted)")
            }
            try await eventually("the receiver took all ten events") { receiver.taken.count >= 10 }
            let taken = receiver.taken
            #expect(taken.count == 10, "no event twice: \(taken)")
            #expect(receiver.badSignatures == 0)
            #expect(receiver.attempts == 13, "three refused, then each once")
            for lot in lots {
                #expect(taken.filter { $0.auctionId == lot.rawValue }.map(\.seq) == Array(1...5), "\(lot)")
            }
            #expect(Set(taken.map(\.type)) == ["auction_created", "bid_placed"])
            // The log has the refusals, then the deliveries (each logged once its answer is in);
            // the cursor stands after the last.
            try await eventually("every delivery is logged") {
                try await store.webhookDeliveries(of: "wh-one", limit: 100).filter { $0.outcome == .delivered }.count
                    >= 10
            }
            let log = try await store.webhookDeliveries(of: "wh-one", limit: 100)
            #expect(log.filter { $0.outcome == .failed }.count == 3)
            #expect(log.filter { $0.outcome == .failed }.allSatisfy { $0.status == 500 && $0.seq == 1 })
            #expect(log.filter { $0.outcome == .delivered }.count == 10)
            try await eventually("the cursor reached the last delivery") {
                try await store.webhookEndpoint("wh-one")?.cursor.description == taken.last?.cursor
            }
        }
    }

    @Test func aHangingEndpoint_holdsBackOnlyItself() async throws {
        try await Self.withDispatcher(requestTimeout: .milliseconds(300)) { node, store in
            let stuck = try await WebhookReceiver.start(secret: "whsec_test_secret_stuck")
            let healthy = try await WebhookReceiver.start(secret: "whsec_test_secret_well")
            defer {
                stuck.stop()
                healthy.stop()
            }
            stuck.set(.hang(.seconds(30)))
            try await Self.register(stuck, as: "wh-stuck", in: store)
            try await Self.register(healthy, as: "wh-well", in: store)
            let lot = AuctionID(rawValue: "wl-hang")!
            #expect(await node.submit(.create(ClusterNodeTests.terms(lot)), to: lot).value?.seq == 1)
            for index in 0..<5 {
                let accepted = await node.submit(
                    Self.bid("wh-\(index)", by: "alice", 2_000 + Int64(index) * 500), to: lot)
                #expect(accepted.value != nil, "bids are not held back by the hanging endpoint: \(accepted)")
            }
            try await eventually("the healthy endpoint took all six") { healthy.taken.count >= 6 }
            #expect(healthy.taken.map(\.seq) == Array(1...6))
            try await eventually("the hanging one is tried again and again") {
                try await store.webhookDeliveries(of: "wh-stuck", limit: 10).count >= 2
            }
            let log = try await store.webhookDeliveries(of: "wh-stuck", limit: 10)
            #expect(log.allSatisfy { $0.outcome == .failed && $0.seq == 1 && $0.status == nil }, "\(log)")
        }
    }

    @Test func aReplay_deliversAgainFromTheCursorGiven() async throws {
        try await Self.withDispatcher { node, store in
            let receiver = try await WebhookReceiver.start(secret: "whsec_test_secret_again")
            defer { receiver.stop() }
            try await Self.register(receiver, as: "wh-replay", in: store)
            let lot = AuctionID(rawValue: "wl-replay")!
            #expect(await node.submit(.create(ClusterNodeTests.terms(lot)), to: lot).value?.seq == 1)
            #expect(await node.submit(Self.bid("wr-1", by: "alice", 2_000), to: lot).value?.seq == 2)
            #expect(await node.submit(Self.bid("wr-2", by: "bob", 3_000), to: lot).value?.seq == 3)
            try await eventually("three delivered") { receiver.taken.count >= 3 }
            let first = try #require(receiver.taken.first.flatMap { FeedCursor($0.cursor) })
            _ = try #require(try await store.rewindWebhookCursor(of: "wh-replay", to: first))
            try await eventually("the two after the first again") { receiver.taken.count >= 5 }
            #expect(receiver.taken.map(\.seq) == [1, 2, 3, 2, 3])
        }
    }

    /// Another node takes the endpoint's shard while this node still thinks it owns it (views that
    /// disagree for a moment): this node's next cursor move is refused, it lets the shard go and
    /// does not take it back before the hold-off — no storm of repeated deliveries, no epoch
    /// ping-pong — then resumes from the cursor where the last acknowledged delivery left it.
    @Test func aFencedCursor_stopsTheDeliverer_untilTheHoldOffHasPassed() async throws {
        let metrics = TestMetrics()
        try await Self.withDispatcher(metrics: metrics) { node, store in
            let receiver = try await WebhookReceiver.start(secret: "whsec_test_secret_fenced")
            defer { receiver.stop() }
            try await Self.register(receiver, as: "wh-fenced", in: store)
            let lot = AuctionID(rawValue: "wl-fenced")!
            #expect(await node.submit(.create(ClusterNodeTests.terms(lot)), to: lot).value?.seq == 1)
            try await eventually("the first event is delivered and the cursor moved past it") {
                let cursor = try await store.webhookEndpoint("wh-fenced")?.cursor
                return receiver.taken.count >= 1 && cursor?.description == receiver.taken.first?.cursor
            }
            let shard = ShardMap().shard(ofKey: WebhookDispatcher.placementKey(of: "wh-fenced"))
            #expect(ShardMap().shard(of: lot) != shard, "the lot's bids are not fenced themselves")
            let before = try #require(try await store.lease(of: shard))
            let taken = try await store.acquire(shard: shard, node: NodeID(rawValue: "node-elsewhere")!)

            #expect(await node.submit(Self.bid("wf-1", by: "alice", 2_000), to: lot).value != nil)
            // The stale deliverer sends it (it cannot know before its cursor move is refused), then
            // stops: without that it would send the bid again and again, its moves all refused.
            try await eventually("the deliverer stops") {
                metrics.counterTotal(label: "artpay_webhook_cursor_fenced_total") == 1
            }
            // After the hold-off (2 s) the owner by the view takes the shard back, once, and delivers
            // from the fenced cursor: the bid arrives (again, if it arrived before).
            try await eventually("the bid is delivered under the new lease") {
                let cursor = try await store.webhookEndpoint("wh-fenced")?.cursor
                return receiver.taken.contains { $0.seq == 2 } && (cursor?.position ?? 0) >= 2
            }
            #expect(
                receiver.taken.filter { $0.seq == 2 }.count <= 2, "sent by the stale deliverer, then once more at most")
            let lease = try #require(try await store.lease(of: shard))
            #expect(lease.epoch.rawValue == taken.epoch.rawValue + 1, "taken back once, from \(before.epoch)")
            #expect(lease.owner == NodeID(rawValue: "node-1")!)
        }
    }
}
