import AuctionCore
import ClusterCore
import Node
import Storage
import TestSupport
import Testing

/// The read model's indexes (by end, by price per sale, ranked bidders, recent bids) give the same
/// answers as computing them from the auctions' states, after a random stream of events delivered
/// in shuffled batches with duplicates and gaps (filled from the store).
@Suite struct ReadModelIndexTests {
    @Test(arguments: [1, 2, 3, 4, 5]) func indexedAnswers_equalBruteForce(seed: UInt64) async throws {
        try await withSQLiteStore { store, _ in
            var random = SeededRandom(seed: seed)
            let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
            var auctions: [AuctionID: Auction] = [:]
            var log: [StoredEvent] = []
            /// Applies decided `events` to `id`'s auction and logs them.
            func take(_ events: [AuctionEvent], _ id: AuctionID) throws {
                var auction = auctions[id] ?? Auction(id: id)
                for event in events {
                    try auction.apply(event)
                    log.append(StoredEvent(auction: id, seq: auction.seq, epoch: Epoch(1), event: event))
                }
                auctions[id] = auction
            }
            let ids = (0..<12).map { AuctionID(rawValue: "idx-\($0)")! }
            for (index, id) in ids.enumerated() {
                let auction = Auction(id: id)
                let terms = AuctionTerms(
                    auctionId: id, sellerId: UserID(rawValue: "seller")!, saleId: SaleID(rawValue: "sale-\(index % 3)"),
                    title: "Lot \(index)", startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: start,
                    closesAt: start.advanced(by: .seconds(Int64(600 + 60 * (index % 5)))),
                    extensionWindow: .seconds(120))
                guard case .accept(let events) = auction.decide(.create(terms), now: start) else {
                    Issue.record("create")
                    return
                }
                try take(events, id)
            }
            var now = start
            for n in 0..<400 {
                now = now.advanced(by: .milliseconds(Int64(random.next() % 3_000)))
                let id = ids[Int(random.next() % UInt64(ids.count))]
                let auction = auctions[id]!
                guard let state = auction.state else { continue }
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "b\(n)")!, bidderId: UserID(rawValue: "bidder-\(random.next() % 7)")!,
                    maximum: state.minimumNextBid + Money(minorUnits: Int64(random.next() % 3) * 500, currency: .eur))
                guard case .accept(let events) = auction.decide(.placeBid(bid), now: now) else { continue }
                try take(events, id)
            }
            // A third of the lots end (the index of running auctions must drop them).
            for id in ids.enumerated().filter({ $0.offset % 3 == 0 }).map(\.element) {
                let auction = auctions[id]!
                guard let endsAt = auction.summary?.endsAt,
                    case .accept(let events) = auction.decide(.close, now: max(now, endsAt))
                else {
                    Issue.record("close \(id)")
                    return
                }
                try take(events, id)
            }
            // The sold lots' settlements move on to different phases: some stay due, some are
            // authorized through an intent, some declined.
            let sold = ids.filter { auctions[$0]!.state?.settlement?.buyerId != nil }
            for (index, id) in sold.enumerated() {
                let buyer = auctions[id]!.state!.settlement!.buyerId!
                var steps: [SettlementCommand] = []
                if index % 3 != 0 {
                    steps = [
                        .choosePaymentMethod(buyerId: buyer, method: PaymentMethodID(rawValue: "pm_card_visa")!),
                        .startAuthorization,
                    ]
                    steps.append(
                        index % 3 == 1
                            ? .authorizationSucceeded(attempt: 1, intent: PaymentIntentID(rawValue: "pi_\(id)")!)
                            : .authorizationDeclined(attempt: 1, reason: "card_declined"))
                }
                for step in steps {
                    guard case .accept(let events) = auctions[id]!.decide(.settle(step), now: now) else {
                        Issue.record("settle \(id): \(step)")
                        return
                    }
                    try take(events, id)
                }
            }
            // The store holds the whole log (for gap reloads); the model gets shuffled batches, some
            // events twice, some never.
            try await appendAll(log, to: store)
            let model = AuctionReadModel(store: store)
            var pending = log
            while !pending.isEmpty {
                let size = min(pending.count, Int(random.next() % 20) + 1)
                var batch = Array(pending.prefix(size))
                pending.removeFirst(size)
                if random.next() % 10 == 0 { batch.removeLast() }  // lost push: a later event reveals the gap
                if random.next() % 5 == 0, let again = batch.first { batch.append(again) }
                batch.shuffle(using: &random)
                await model.apply(batch)
            }
            await model.apply(log.suffix(1))

            let snapshot = model.snapshot
            // Every accepted bid of a lot, from its log (its ledger keeps only the recent ones whole).
            func receipts(of id: AuctionID) -> [BidReceipt] {
                log.filter { $0.auction == id }.compactMap { BidReceipt(accepting: $0.event, seq: $0.seq) }
            }
            let summaries = ids.compactMap { auctions[$0]?.summary }
            #expect(snapshot.count == ids.count)
            for summary in summaries { #expect(snapshot.summary(of: summary.auctionId) == summary) }
            let byEnd = summaries.sorted { ($0.endsAt, $0.auctionId) < ($1.endsAt, $1.auctionId) }
            #expect(
                snapshot.list({ $0.bidCount % 2 == 0 }, limit: 5)
                    == Array(byEnd.filter { $0.bidCount % 2 == 0 }.prefix(5)))
            if let middle = byEnd.dropFirst(byEnd.count / 2).first?.endsAt {
                let running = byEnd.filter { $0.status == .running }
                #expect(running.count < byEnd.count, "some auctions ended, so the index must leave them out")
                #expect(
                    snapshot.running(endingBy: middle, limit: 1_000)
                        == running.filter { $0.endsAt <= middle })
                #expect(
                    snapshot.running(endingBy: middle, limit: 2)
                        == Array(running.filter { $0.endsAt <= middle }.prefix(2)))
            }
            for sale in 0..<3 {
                let expected = summaries.filter { $0.saleId == SaleID(rawValue: "sale-\(sale)") }
                    .sorted { ($0.price.minorUnits, $1.auctionId) > ($1.price.minorUnits, $0.auctionId) }
                #expect(
                    snapshot.highestPrices(inSale: SaleID(rawValue: "sale-\(sale)")!, limit: 3)
                        == Array(expected.prefix(3)))
            }
            for minutes in [1, 5, 30] {
                let since = now.advanced(by: .seconds(Int64(-60 * minutes)))
                // Most active counts in whole minutes: every bid of the minute `since` falls in counts.
                let sinceMinute = since.millisecondsSinceEpoch / 60_000
                let expected = ids.compactMap { id -> (AuctionSummary, Int)? in
                    let count = receipts(of: id).filter {
                        $0.at.millisecondsSinceEpoch / 60_000 >= sinceMinute
                    }.count
                    return count > 0 ? (auctions[id]!.summary!, count) : nil
                }
                .sorted { ($0.1, $1.0.endsAt, $1.0.auctionId) > ($1.1, $0.0.endsAt, $0.0.auctionId) }
                let got = snapshot.mostActive(since: since, limit: 4)
                #expect(got.map(\.summary.auctionId) == expected.prefix(4).map(\.0.auctionId), "\(minutes) minutes")
                #expect(got.map(\.recentBids) == expected.prefix(4).map(\.1), "\(minutes) minutes")
            }
            // Settlements: per user, per phase, by intent — as a scan of every lot would find them.
            let settlements = ids.compactMap { auctions[$0]!.state?.settlement }
            #expect(!settlements.isEmpty)
            for bidder in (0..<7).map({ UserID(rawValue: "bidder-\($0)")! }) {
                #expect(
                    model.settlements(of: bidder).map(\.auctionId)
                        == settlements.filter { $0.buyerId == bidder || $0.offer?.bidderId == bidder }.map(\.auctionId)
                        .sorted())
            }
            for phase in [nil] + Settlement.Phase.allCases.map(Optional.some) {
                let expected = settlements.filter { phase == nil || $0.phase == phase }.map(\.auctionId).sorted()
                #expect(model.settlements(in: phase, limit: 1_000).map(\.auctionId) == expected, "\(String(describing: phase))")
                #expect(model.settlements(in: phase, limit: 2).map(\.auctionId) == Array(expected.prefix(2)))
            }
            #expect(Set(settlements.compactMap(\.phase)).count >= 3, "due, authorized and declined")
            for settlement in settlements {
                guard let intent = settlement.intent else { continue }
                #expect(model.settlement(withIntent: intent.rawValue)?.auctionId == settlement.auctionId)
            }
            #expect(model.settlement(withIntent: "pi_unknown") == nil)
            for id in ids {
                let state = auctions[id]!.state!
                var best: [UserID: (Money, Int)] = [:]
                for receipt in receipts(of: id) {
                    let (price, count) = best[receipt.bidderId] ?? (receipt.price, 0)
                    best[receipt.bidderId] = (max(price, receipt.price), count + 1)
                }
                if let leader = state.leader?.bidderId { best[leader]!.0 = max(best[leader]!.0, state.price) }
                let expected = best.sorted {
                    ($0.key == state.leader?.bidderId ? 1 : 0, $0.value.0.minorUnits, $1.key.rawValue)
                        > ($1.key == state.leader?.bidderId ? 1 : 0, $1.value.0.minorUnits, $0.key.rawValue)
                }
                let got = snapshot.topBidders(of: id, limit: 100)?.standings ?? []
                #expect(got.map(\.bidderId) == expected.map(\.key), "\(id)")
                #expect(got.map(\.highestPrice) == expected.map(\.value.0), "\(id)")
                #expect(got.map(\.bids) == expected.map(\.value.1), "\(id)")
            }
        }
    }

    /// A node that missed an auction's last event (it was partitioned when the auction closed) hears
    /// of it from the store's log heads on its next catch-ups: the read model shows the close, and
    /// the bidders get their won / lost notifications.
    // Five minutes, not one: under the full suite on 2 cores, opening its SQLite store once waited
    // over a minute for SQLiteNIO's thread pool, and the cancelled open then crashed the process.
    @Test(.timeLimit(.minutes(5))) func aMissedLastEvent_isCaughtUp_withItsNotifications() async throws {
        try await withSQLiteStore { store, _ in
            let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
            let id = AuctionID(rawValue: "lot-missed-close")!
            let alice = UserID(rawValue: "alice")!
            let bob = UserID(rawValue: "bob")!
            var auction = Auction(id: id)
            var log: [StoredEvent] = []
            func take(_ command: AuctionCommand, at now: Timestamp) throws {
                guard case .accept(let events) = auction.decide(command, now: now) else {
                    Issue.record("\(command) refused")
                    return
                }
                for event in events {
                    try auction.apply(event)
                    log.append(StoredEvent(auction: id, seq: auction.seq, epoch: Epoch(1), event: event))
                }
            }
            try take(
                .create(
                    AuctionTerms(
                        auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                        startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: start,
                        closesAt: start.advanced(by: .seconds(60)), extensionWindow: .zero)), at: start)
            try take(
                .placeBid(
                    PlaceBid(
                        bidId: BidID(rawValue: "a1")!, bidderId: alice,
                        maximum: Money(minorUnits: 2_000, currency: .eur)
                    )), at: start.advanced(by: .seconds(1)))
            try take(
                .placeBid(
                    PlaceBid(
                        bidId: BidID(rawValue: "b1")!, bidderId: bob, maximum: Money(minorUnits: 3_000, currency: .eur))
                ),
                at: start.advanced(by: .seconds(2)))
            try take(.close, at: start.advanced(by: .seconds(61)))
            #expect(log.count == 5, "the close opens the winner's settlement in the same batch")

            let model = AuctionReadModel(store: store, notifyFrom: start)
            await model.catchUp()  // an empty store: nothing yet
            var aliceHears = model.notifications.subscribe(alice, from: .now).makeAsyncIterator()
            var bobHears = model.notifications.subscribe(bob, from: .now).makeAsyncIterator()
            try await appendAll(Array(log.prefix(3)), to: store)
            await model.apply(Array(log.prefix(3)))
            #expect(await aliceHears.next()?.kind == .outbid)
            try await appendAll(Array(log.suffix(2)), to: store)  // written, never pushed here
            #expect(model.summary(of: id)?.status == .running)

            await model.catchUp()  // sees the log ahead; a push may still be on its way
            await model.catchUp()  // still ahead: reads it
            #expect(model.summary(of: id)?.seq == 5)
            #expect(model.summary(of: id)?.status == auction.state?.status)
            #expect(await aliceHears.next()?.kind == .lost)
            #expect(await bobHears.next()?.kind == .won)
        }
    }

    private func appendAll(_ log: [StoredEvent], to store: some EventStore) async throws {
        let shards = ShardMap()
        var epochs: [ShardID: Epoch] = [:]
        for event in log {
            let shard = shards.shard(of: event.auction)
            if epochs[shard] == nil {
                epochs[shard] = try await store.acquire(shard: shard, node: NodeID(rawValue: "writer")!).epoch
            }
            try await store.append(
                AppendBatch(entries: [
                    AppendEntry(
                        auction: event.auction, shard: shard, epoch: epochs[shard]!, firstSeq: event.seq,
                        events: [event.event])
                ]))
        }
    }
}
