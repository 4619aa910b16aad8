import AuctionCore
import ClusterCore
import Storage
import Testing

@testable import Node

/// The read model's rules without a store: a log replayed whole (how a starting node loads it, a
/// page of logs per read) gives exactly what applying its events one by one gives, and neither
/// path moves an auction backwards or past a gap.
@Suite struct ReadModelProjectionTests {
    static let start = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)

    /// A seeded log: created, bids by a few bidders (some below the minimum, dropped), a buy-now
    /// now and then, closed for some.
    static func log(_ id: AuctionID, random: inout SeededRandom) -> [StoredEvent] {
        var auction = Auction(id: id)
        var events: [AuctionEvent] = []
        let terms = AuctionTerms(
            auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
            startingPrice: Money(minorUnits: 1_000, currency: .eur),
            buyNowPrice: random.next() % 4 == 0 ? Money(minorUnits: 40_000, currency: .eur) : nil, opensAt: start,
            closesAt: start.advanced(by: .seconds(3_600)), extensionWindow: .zero)
        func take(_ command: AuctionCommand, at now: Timestamp) {
            guard case .accept(let decided) = auction.decide(command, now: now),
                (try? auction.apply(contentsOf: decided)) != nil
            else { return }
            events += decided
        }
        take(.create(terms), at: start)
        for index in 0..<Int(random.next() % 40) {
            let at = start.advanced(by: .seconds(Int64(index + 1)))
            let bidder = UserID(rawValue: "u-\(random.next() % 5)")!
            if random.next() % 25 == 0 {
                let price = Money(minorUnits: 40_000, currency: .eur)
                take(.buyNow(BuyNow(bidId: BidID(rawValue: "n-\(index)")!, bidderId: bidder, price: price)), at: at)
            } else {
                let maximum = Money(minorUnits: 1_000 + Int64(random.next() % 30_000), currency: .eur)
                take(
                    .placeBid(PlaceBid(bidId: BidID(rawValue: "b-\(index)")!, bidderId: bidder, maximum: maximum)),
                    at: at)
            }
        }
        if random.next() % 2 == 0 { take(.close, at: start.advanced(by: .seconds(3_600))) }
        let epoch = Epoch(1 + Int64(random.next() % 3))
        return events.enumerated().map {
            StoredEvent(auction: id, seq: Int64($0.offset + 1), epoch: epoch, event: $0.element)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func aReplayedLog_equalsItsEventsAppliedOneByOne(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let logs = (0..<40).map { Self.log(AuctionID(rawValue: "lot-\($0)")!, random: &random) }
        var stepped = ReadModelProjection(notifyFrom: Self.start)
        var replayed = ReadModelProjection(notifyFrom: Self.start)
        var notes: [BidderNotification] = []
        for log in logs {
            for event in log {
                let applied = stepped.step(event, &notes)
                #expect(applied)
            }
            stepped.index(log[0].auction)
            var replay = ReadModelProjection.Replay(log[0].auction)
            for event in log {
                let applied = replay.add(event)
                #expect(applied)
            }
            let applied = replayed.install(replay)
            #expect(applied)
        }
        #expect(!notes.isEmpty, "stepping derives notifications; a replay sends none")
        #expect(replayed.snapshot.count == logs.count)
        for log in logs {
            let id = log[0].auction
            #expect(replayed.seq(of: id) == Int64(log.count))
            #expect(replayed.snapshot.summary(of: id) == stepped.snapshot.summary(of: id))
            #expect(
                replayed.snapshot.topBidders(of: id, limit: 10)?.standings
                    == stepped.snapshot.topBidders(of: id, limit: 10)?.standings)
            #expect(replayed.snapshot.settlements[id] == stepped.snapshot.settlements[id])
        }
        let replayedRaised = replayed.takeChanges().raised.count
        let steppedRaised = stepped.takeChanges().raised.count
        #expect(replayedRaised == steppedRaised)
    }

    @Test func nothingMovesBackwardsOrPastAGap() {
        var random = SeededRandom(seed: 9)
        var log: [StoredEvent] = []
        while log.count < 6 { log = Self.log(AuctionID(rawValue: "lot")!, random: &random) }
        var projection = ReadModelProjection(notifyFrom: Self.start)
        var notes: [BidderNotification] = []
        func step(_ event: StoredEvent) -> Bool { projection.step(event, &notes) }
        #expect(!step(log[1]), "the first event is missing")
        #expect(step(log[0]))
        #expect(!step(log[2]), "a gap")
        #expect(!step(log[0]), "a repeat")

        var replay = ReadModelProjection.Replay(log[0].auction)
        func add(_ event: StoredEvent) -> Bool { replay.add(event) }
        #expect(!add(log[1]), "a replay starts at the first event")
        #expect(log[..<4].allSatisfy(add))
        #expect(!add(log[5]), "a gap")
        let other = Self.log(AuctionID(rawValue: "other")!, random: &random)
        #expect(!add(other[0]), "another auction's event")
        let installed = projection.install(replay)
        #expect(installed)
        #expect(projection.seq(of: log[0].auction) == 4)

        var shorter = ReadModelProjection.Replay(log[0].auction)
        #expect(log[..<3].allSatisfy { shorter.add($0) })
        let replaced = projection.install(shorter)
        #expect(!replaced, "an older replay does not replace a newer state")
        #expect(projection.seq(of: log[0].auction) == 4)
        #expect(step(log[4]), "stepping goes on from the installed replay")
    }
}
