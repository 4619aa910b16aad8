import AuctionCore
import ClusterCore
import Testing

@testable import Node

/// The persistent pieces of the read model's snapshot: they must give the answers of the plain
/// structures they replace, and an old copy must not see the writer's later changes.
@Suite struct ReadModelStructureTests {
    @Test(arguments: [1, 2, 3]) func chunkedSortedArray_staysSorted_likeAPlainArray(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var chunked = ChunkedSortedArray<Int>(chunkSize: 2)
        var plain: [Int] = []
        var published: [(ChunkedSortedArray<Int>, [Int])] = []
        for step in 0..<2_000 {
            let value = Int(random.next() % 300)
            if random.next() % 3 == 0, let index = plain.firstIndex(of: value) {
                plain.remove(at: index)
                chunked.remove(value)
            } else if random.next() % 7 == 0 {
                chunked.remove(value + 1_000)  // absent: no change
            } else {
                plain.insert(value, at: plain.firstIndex { $0 >= value } ?? plain.count)
                chunked.insert(value)
            }
            if step % 100 == 0 { published.append((chunked, plain)) }
            #expect(chunked.count == plain.count)
        }
        #expect(Array(chunked) == plain)
        for (copy, expected) in published { #expect(Array(copy) == expected) }
    }

    @Test func bidsPerMinute_countsWholeMinutes_andForgetsBeyondAnHour() {
        var bids = BidsPerMinute()
        let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)  // a whole minute
        bids.record(start)
        bids.record(start.advanced(by: .seconds(40)))
        bids.record(start.advanced(by: .seconds(70)))
        bids.record(start.advanced(by: .seconds(59)))  // late, into an earlier minute
        #expect(bids.count(since: start) == 4)
        #expect(bids.count(since: start.advanced(by: .milliseconds(59_999))) == 4)
        #expect(bids.count(since: start.advanced(by: .seconds(60))) == 1)
        #expect(bids.count(since: start.advanced(by: .seconds(120))) == 0)
        bids.record(start.advanced(by: .seconds(60 * 61)))
        #expect(bids.count(since: start) == 2, "the first minute is over an hour before the newest bid")
        bids.record(start.advanced(by: .seconds(60 * 61 - 3_700)))
        #expect(bids.count(since: start) == 2, "a bid from before the hour is not counted")
        for minute in 0..<500 {
            for _ in 0..<3 { bids.record(start.advanced(by: .seconds(Int64(60 * (100 + minute))))) }
        }
        #expect(bids.count(since: start) == 3 * 61, "one count per minute of the last hour, however many bids")
        bids.record(start.advanced(by: .seconds(60 * 2_000)))
        #expect(bids.count(since: start) == 1, "a jump of over an hour forgets everything before it")
    }

    @Test func removingALot_leavesNoTraceInAnyIndex() {
        func summary(_ id: String, price: Int64, ends: Int64, status: AuctionState.Status) -> AuctionSummary {
            AuctionSummary(
                auctionId: AuctionID(rawValue: id)!, seq: 3, sellerId: UserID(rawValue: "sue")!,
                saleId: SaleID(rawValue: "autumn")!, title: id, price: Money(minorUnits: price, currency: .eur),
                minimumNextBid: Money(minorUnits: price + 100, currency: .eur), leaderId: nil, bidCount: 1,
                opensAt: Timestamp(millisecondsSinceEpoch: 0), endsAt: Timestamp(millisecondsSinceEpoch: ends),
                hasReserve: false, reserveMet: true, buyNowPrice: nil, status: status)
        }
        var snapshot = ReadModelSnapshot()
        let open = summary("open", price: 2_000, ends: 9_000, status: .running)
        let over = summary("over", price: 3_000, ends: 5_000, status: .closed(.unsold(.reserveNotMet)))
        snapshot.set(open.auctionId, summary: open)
        snapshot.set(over.auctionId, summary: over)
        snapshot.recentBids[over.auctionId] = BidsPerMinute()
        let before = snapshot
        #expect(snapshot.finished(endedBefore: Timestamp(millisecondsSinceEpoch: 10_000)) == [over.auctionId])
        snapshot.remove(over.auctionId)
        snapshot.remove(AuctionID(rawValue: "never-there")!)
        #expect(snapshot.count == 1)
        #expect(Array(snapshot.byEnd).map(\.id) == [open.auctionId])
        #expect(Array(snapshot.runningByEnd).map(\.id) == [open.auctionId])
        #expect(
            snapshot.highestPrices(inSale: SaleID(rawValue: "autumn")!, limit: 10).map(\.auctionId) == [open.auctionId])
        #expect(snapshot.recentBids[over.auctionId] == nil)
        snapshot.remove(open.auctionId)
        #expect(snapshot.count == 0 && snapshot.bySalePrice.isEmpty && snapshot.runningByEnd.count == 0)
        #expect(before.count == 2, "a published copy keeps what it had")
    }

    /// A lot's standings kept one bid at a time rank its bidders as sorting them all afresh would,
    /// across chunk splits (500 bidders), ties on price included; a published ranking keeps what it had.
    @Test(arguments: [1, 2]) func auctionStandings_rankLikeAFullSort(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var standings = AuctionStandings()
        var published: [(ChunkedSortedArray<RankedStanding>, [UserID])] = []
        func fullSort(_ standings: AuctionStandings) -> [UserID] {
            standings.byBidder.values.sorted {
                ($0.highestPrice.minorUnits, $1.bidderId.rawValue) > ($1.highestPrice.minorUnits, $0.bidderId.rawValue)
            }.map(\.bidderId)
        }
        for step in 0..<5_000 {
            let bidder = UserID(rawValue: "bidder-\(random.next() % 500)")!
            // Prices repeat (a tenth of the range), so ties on price are ranked by bidder id.
            standings.record(bidder, Money(minorUnits: Int64(random.next() % 400) * 100, currency: .eur))
            if step % 500 == 0 { published.append((standings.ranking, fullSort(standings))) }
        }
        #expect(standings.ranking.count == standings.byBidder.count)
        #expect(standings.ranking.map(\.standing.bidderId) == fullSort(standings))
        #expect(standings.ranking.map(\.standing) == fullSort(standings).map { standings.byBidder[$0]! })
        #expect(standings.byBidder.values.reduce(0) { $0 + $1.bids } == 5_000)
        for (ranking, order) in published { #expect(ranking.map(\.standing.bidderId) == order) }
    }
}
