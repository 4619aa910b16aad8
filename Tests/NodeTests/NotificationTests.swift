import AuctionCore
import AuctionRuntime
import Node
import Storage
import Synchronization
import TestSupport
import Testing

@Suite struct NotificationHubTests {
    private func note(_ seq: Int64, at ms: Int64, user: String = "alice") -> BidderNotification {
        BidderNotification(
            userId: UserID(rawValue: user)!, kind: .outbid, auctionId: AuctionID(rawValue: "lot")!, seq: seq,
            title: "Lot",
            price: Money(minorUnits: 1_000, currency: .eur), endsAt: Timestamp(millisecondsSinceEpoch: 0),
            at: Timestamp(millisecondsSinceEpoch: ms))
    }

    private func drain(_ stream: AsyncStream<BidderNotification>, count: Int) async -> [Int64] {
        var seqs: [Int64] = []
        for await notification in stream {
            seqs.append(notification.seq)
            if seqs.count == count { break }
        }
        return seqs
    }

    @Test func subscribers_getTheirOwnLiveNotifications_andWhatTheyAskFromTheRetainedOnes() async {
        let hub = NotificationHub(retainedPerUser: 3)
        hub.publish((1...5).map { note($0, at: $0 * 1_000) } + [note(9, at: 9_000, user: "bob")])
        let live = hub.subscribe(UserID(rawValue: "alice")!, from: .now)
        let since = hub.subscribe(UserID(rawValue: "alice")!, from: .since(Timestamp(millisecondsSinceEpoch: 4_000)))
        let afterKnown = hub.subscribe(UserID(rawValue: "alice")!, from: .after(id: "lot:4:outbid"))
        // Seq 1 was dropped (3 retained): an unknown id replays every retained one.
        let afterForgotten = hub.subscribe(UserID(rawValue: "alice")!, from: .after(id: "lot:1:outbid"))
        #expect(hub.subscriberCount == 4)
        hub.publish([note(6, at: 6_000), note(10, at: 10_000, user: "bob")])
        #expect(await drain(live, count: 1) == [6])
        #expect(await drain(since, count: 3) == [4, 5, 6])
        #expect(await drain(afterKnown, count: 3) == [4, 5, 6])
        #expect(await drain(afterForgotten, count: 4) == [3, 4, 5, 6])
    }

    @Test func aStreamThatEnds_isForgotten() async {
        let hub = NotificationHub()
        do {
            let stream = hub.subscribe(UserID(rawValue: "alice")!, from: .now)
            let reader = Task { for await _ in stream {} }
            reader.cancel()
            await reader.value
        }
        try? await eventually("the subscriber is removed") { hub.subscriberCount == 0 }
        #expect(hub.subscriberCount == 0)
    }
}

/// Every node derives every bidder's notifications from the fan-out: a bidder listening on one
/// node hears about bids placed through another and about the close decided by the owner.
@Suite(.serialized) struct ClusterNotificationTests {
    @Test func aBidderOnAnyNode_hearsOutbidAndTheResult() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 3, store: store)
            try await cluster.converged()
            let id = AuctionID(rawValue: "lot-notify")!
            let now = SystemClock().now()
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Notified",
                startingPrice: Money(minorUnits: 1_000, currency: .eur),
                // Long enough for both bids to land before the close on a machine busy with the suite.
                opensAt: now, closesAt: now.advanced(by: .seconds(6)), extensionWindow: .zero)
            let created = await cluster.nodes[0].node.submit(.create(terms), to: id)
            #expect((try? created.get()) != nil, "created: \(created)")
            let heard = Heard()
            var listeners: [Task<Void, Never>] = []
            for index in 0..<3 {
                let stream = cluster.nodes[index].node.readModel.notifications.subscribe(
                    UserID(rawValue: index == 2 ? "bob" : "alice")!, from: .now)
                listeners.append(
                    Task {
                        for await notification in stream {
                            heard.lines.withLock {
                                $0.append(
                                    "\(index):\(notification.userId.rawValue):\(notification.kind.rawValue)@\(notification.seq)"
                                )
                            }
                        }
                    })
            }
            defer { for listener in listeners { listener.cancel() } }
            for (n, (bidder, maximum)) in [("alice", 2_000), ("bob", 5_000)].enumerated() {
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "b\(n)")!, bidderId: UserID(rawValue: bidder)!,
                    maximum: Money(minorUnits: Int64(maximum), currency: .eur))
                let placed = await cluster.nodes[n % 3].node.submit(.placeBid(bid), to: id)
                #expect((try? placed.get()) != nil, "\(bidder)'s bid: \(placed)")
            }
            do {
                try await eventually(
                    "alice (on nodes 1 and 2) hears outbid, then lost; bob (on node 3) won, then owes the invoice"
                ) {
                    Set(heard.lines.withLock { $0 }) == [
                        "0:alice:outbid@3", "1:alice:outbid@3", "0:alice:lost@4", "1:alice:lost@4", "2:bob:won@4",
                        "2:bob:payment_due@5",
                    ]
                }
            } catch {
                Issue.record("heard: \(heard.lines.withLock { $0 })")
                throw error
            }
            await cluster.stop()
        }
    }
}

/// What the listeners heard, shared with their tasks.
private final class Heard: Sendable {
    let lines = Mutex<[String]>([])
}
