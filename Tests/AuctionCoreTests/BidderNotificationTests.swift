import AuctionCore
import Testing

/// Who hears what: the notifications derived from each event, fed the way the read model feeds
/// them (the auction after the event, the leader before it, every bidder so far).
@Suite struct BidderNotificationTests {
    typealias F = Fixture

    /// Runs `commands` and collects every notification, as `user:kind@seq`.
    private func notices(_ commands: [(AuctionCommand, Timestamp)], terms: AuctionTerms = F.terms()) -> [String] {
        var auction = F.created(terms)
        var bidders: Set<UserID> = []
        var heard: [String] = []
        for (command, now) in commands {
            guard case .accept(let events) = auction.decide(command, now: now) else { continue }
            for event in events {
                let previousLeader = auction.state?.leader?.bidderId
                try! auction.apply(event)
                if case .bidAccepted(let bid) = event { bidders.insert(bid.bidderId) }
                if case .boughtNow(let purchase) = event { bidders.insert(purchase.bidderId) }
                heard += auction.notifications(after: event, previousLeader: previousLeader, bidders: bidders)
                    .map { "\($0.userId.rawValue):\($0.kind.rawValue)@\($0.seq)" }
            }
        }
        return heard
    }

    @Test func outbid_goesToTheFormerLeader_andToABidderTheProxyBeatAtOnce() {
        let heard = notices([
            (F.bid("a1", F.alice, 5_000), F.duringSale),  // seq 2: alice leads, nobody to tell
            (F.bid("b1", F.bob, 3_000), F.duringSale),  // seq 3: alice's proxy beats bob at once
            (F.bid("b2", F.bob, 8_000), F.duringSale),  // seq 4: bob leads, alice is outbid
            (F.bid("b3", F.bob, 9_000), F.duringSale),  // seq 5: bob raises his own maximum: nobody
        ])
        #expect(heard == ["bob:outbid@3", "alice:outbid@4"])
    }

    @Test func close_tellsTheWinnerWon_andEveryOtherBidderLost() {
        let heard = notices([
            (F.bid("a1", F.alice, 5_000), F.duringSale),
            (F.bid("b1", F.bob, 3_000), F.duringSale),
            (F.bid("c1", F.carol, 4_000), F.duringSale),
            (.close, F.closesAt),
        ])
        // The winner's invoice opens with the hammer (the next seq).
        #expect(heard.suffix(4) == ["alice:won@5", "bob:lost@5", "carol:lost@5", "alice:payment_due@6"])
    }

    @Test func unsoldBelowReserve_everyBidderLost() {
        let heard = notices(
            [(F.bid("a1", F.alice, 5_000), F.duringSale), (.close, F.closesAt)], terms: F.terms(reserve: 90_000))
        #expect(heard == ["alice:lost@3"])
    }

    @Test func softClose_tellsEveryBidderTheNewEnd() {
        let late = F.closesAt.advanced(by: .seconds(-30))
        let heard = notices([(F.bid("a1", F.alice, 5_000), F.duringSale), (F.bid("b1", F.bob, 9_000), late)])
        #expect(heard == ["alice:outbid@3", "alice:extended@4", "bob:extended@4"])
    }

    @Test func cancel_tellsEveryBidder_andBuyNowTellsTheOthersTheyLost() {
        #expect(
            notices([(F.bid("a1", F.alice, 5_000), F.duringSale), (.cancel(reason: "withdrawn"), F.duringSale)])
                == ["alice:cancelled@3"])
        let boughtNow = notices(
            [
                (F.bid("a1", F.alice, 5_000), F.duringSale),
                (.buyNow(BuyNow(bidId: BidID(rawValue: "c1")!, bidderId: F.carol, price: F.usd(50_000))), F.duringSale),
            ], terms: F.terms(reserve: 20_000, buyNow: 50_000))  // buy-now stays until the reserve is met
        #expect(boughtNow == ["alice:lost@4", "carol:won@4", "carol:payment_due@5"])
    }

    @Test func ids_areTheSameWhoeverDerivesThem() {
        let note = BidderNotification(
            userId: F.alice, kind: .outbid, auctionId: F.auctionId, seq: 7, title: "t", price: F.usd(1),
            endsAt: F.closesAt,
            at: F.duringSale)
        #expect(note.id == "lot-42:7:outbid")
    }
}
