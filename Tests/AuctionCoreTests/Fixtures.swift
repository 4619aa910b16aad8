import AuctionCore

/// Fixed identities and helpers so each test reads as a story.
enum Fixture {
    static let auctionId = AuctionID(rawValue: "lot-42")!
    static let seller = UserID(rawValue: "seller")!
    static let alice = UserID(rawValue: "alice")!
    static let bob = UserID(rawValue: "bob")!
    static let carol = UserID(rawValue: "carol")!
    static let opensAt = Timestamp(millisecondsSinceEpoch: 1_000_000)
    static let closesAt = Timestamp(millisecondsSinceEpoch: 1_000_000 + 3_600_000)
    static let duringSale = Timestamp(millisecondsSinceEpoch: 1_000_000 + 60_000)

    static func usd(_ cents: Int64) -> Money { Money(minorUnits: cents, currency: .usd) }

    static func terms(
        starting: Int64 = 1_000, reserve: Int64? = nil, buyNow: Int64? = nil,
        extensionWindow: Duration = .seconds(120)
    ) -> AuctionTerms {
        AuctionTerms(
            auctionId: auctionId, sellerId: seller, title: "Untitled (blue)", startingPrice: usd(starting),
            reservePrice: reserve.map(usd), buyNowPrice: buyNow.map(usd), opensAt: opensAt, closesAt: closesAt,
            extensionWindow: extensionWindow)
    }

    static func created(_ terms: AuctionTerms = terms()) -> Auction {
        var auction = Auction(id: auctionId)
        auction.mustApply(auction.decide(.create(terms), now: Timestamp(millisecondsSinceEpoch: 0)))
        return auction
    }

    static func bid(_ id: String, _ bidder: UserID, _ cents: Int64) -> AuctionCommand {
        .placeBid(PlaceBid(bidId: BidID(rawValue: id)!, bidderId: bidder, maximum: usd(cents)))
    }
}

extension Auction {
    /// Applies an accepted decision; any other decision is a broken test setup.
    mutating func mustApply(_ decision: Decision) {
        guard case .accept(let events) = decision else { fatalError("expected acceptance, got \(decision)") }
        try! apply(contentsOf: events)
    }

    /// Decides and, when accepted, applies; returns the decision.
    @discardableResult
    mutating func handle(_ command: AuctionCommand, at now: Timestamp = Fixture.duringSale) -> Decision {
        let decision = decide(command, now: now)
        if case .accept(let events) = decision { try! apply(contentsOf: events) }
        return decision
    }

    var running: AuctionState { state! }
}
