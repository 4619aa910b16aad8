import AuctionCore
import Foundation
import Histogram
import Node
import Storage

/// Leaderboard reads on a node's read model while bids stream in: the server-side cost of a
/// leaderboard request (the HTTP layer adds parsing and JSON encoding on top).
enum ReadModelBench {
    struct Result {
        var name: String
        var latency: Histogram<UInt64>
        var count: Int
    }

    static func run(auctions count: Int, bidsPerAuction: Int, readers: Int, duration: Duration) async throws -> (
        results: [Result], bidsApplied: Int
    ) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-rm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try await SQLiteEventStore.open(path: directory.appendingPathComponent("rm.sqlite").path)
        let model = AuctionReadModel(store: store)
        let now = Timestamp(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1_000))
        let ids = (0..<count).map { AuctionID(rawValue: "rm-\($0)")! }
        var states: [Auction] = []
        // Every auction created, in one sale, with its first bids.
        for id in ids {
            var auction = Auction(id: id)
            var events: [StoredEvent] = []
            func take(_ decision: Auction.Decision) {
                guard case .accept(let decided) = decision else { return }
                for event in decided {
                    try! auction.apply(event)
                    events.append(StoredEvent(auction: id, seq: auction.seq, epoch: Epoch(1), event: event))
                }
            }
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!,
                saleId: SaleID(rawValue: "sale-\(id.rawValue.count % 10)"),
                title: "Lot", startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
                closesAt: now.advanced(by: .seconds(86_400)), extensionWindow: .zero)
            take(auction.decide(.create(terms), now: now))
            for n in 0..<bidsPerAuction {
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "b\(n)")!, bidderId: UserID(rawValue: "bidder-\(n % 20)")!,
                    maximum: auction.state!.minimumNextBid)
                take(auction.decide(.placeBid(bid), now: now))
            }
            await model.apply(events)
            states.append(auction)
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        let initialStates = states
        async let applied: Int = {
            // The writer: a bid on a random auction as fast as the model takes them.
            var states = initialStates
            var applied = 0
            while clock.now < deadline {
                let index = Int.random(in: 0..<states.count)
                var auction = states[index]
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "w\(applied)")!, bidderId: UserID(rawValue: "bidder-\(applied % 20)")!,
                    maximum: auction.state!.minimumNextBid)
                guard case .accept(let decided) = auction.decide(.placeBid(bid), now: now) else { continue }
                var events: [StoredEvent] = []
                for event in decided {
                    try! auction.apply(event)
                    events.append(StoredEvent(auction: auction.id, seq: auction.seq, epoch: Epoch(1), event: event))
                }
                states[index] = auction
                await model.apply(events)
                applied += 1
            }
            return applied
        }()
        let results = await withTaskGroup(of: [Result].self) { group in
            for _ in 0..<readers {
                group.addTask {
                    var board = Result(
                        name: "top bidders of an auction", latency: Histogram(highestTrackableValue: 10_000_000),
                        count: 0)
                    var active = Result(
                        name: "most active in 5 minutes", latency: Histogram(highestTrackableValue: 10_000_000),
                        count: 0)
                    var sale = Result(
                        name: "highest prices of a sale", latency: Histogram(highestTrackableValue: 10_000_000),
                        count: 0)
                    var round = 0
                    while clock.now < deadline {
                        round += 1
                        let started = clock.now
                        switch round % 3 {
                        case 0: _ = model.topBidders(of: ids[Int.random(in: 0..<ids.count)], limit: 10)
                        case 1: _ = model.mostActive(since: now.advanced(by: .seconds(-300)), limit: 10)
                        default:
                            _ = model.highestPrices(
                                inSale: SaleID(rawValue: "sale-\(Int.random(in: 4...7))")!, limit: 10)
                        }
                        let elapsed = (clock.now - started).components
                        let micros = UInt64(elapsed.seconds * 1_000_000 + elapsed.attoseconds / 1_000_000_000_000)
                        switch round % 3 {
                        case 0:
                            _ = board.latency.record(micros)
                            board.count += 1
                        case 1:
                            _ = active.latency.record(micros)
                            active.count += 1
                        default:
                            _ = sale.latency.record(micros)
                            sale.count += 1
                        }
                    }
                    return [board, active, sale]
                }
            }
            var merged: [String: Result] = [:]
            for await part in group {
                for result in part {
                    if var existing = merged[result.name] {
                        existing.latency.add(result.latency)
                        existing.count += result.count
                        merged[result.name] = existing
                    } else {
                        merged[result.name] = result
                    }
                }
            }
            return merged.values.sorted { $0.name < $1.name }
        }
        let bids = await applied
        await store.close()
        return (results, bids)
    }
}
