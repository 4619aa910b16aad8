/// The second-chance price of a lot whose buyer defaulted: the price at which the auction would
/// have closed without the defaulters' bids — the log replayed through the real rules at each
/// bid's own time, minus those bids — so it is never above the runner-up's maximum, follows the
/// increments and the soft close as they would have been, and exists only if the reserve is still
/// met. It is an offer for the runner-up to accept, never a charge.
public enum SecondChance {
    /// Who would have won and at what price, or nil (no other bidder, or the reserve not met).
    public static func runnerUp(in log: some Sequence<AuctionEvent>, excluding defaulters: Set<UserID>)
        -> (bidderId: UserID, price: Money)?
    {
        var events = log.makeIterator()
        guard case .created(let created)? = events.next() else { return nil }
        var auction = Auction(id: created.terms.auctionId)
        func run(_ command: AuctionCommand, at now: Timestamp) {
            if case .accept(let decided) = auction.decide(command, now: now) {
                try? auction.apply(contentsOf: decided)
            }
        }
        run(.create(created.terms), at: created.at)
        while let event = events.next() {
            switch event {
            case .bidAccepted(let bid) where !defaulters.contains(bid.bidderId):
                run(.placeBid(PlaceBid(bidId: bid.bidId, bidderId: bid.bidderId, maximum: bid.maximum)), at: bid.at)
            case .boughtNow(let purchase) where !defaulters.contains(purchase.bidderId):
                run(
                    .buyNow(BuyNow(bidId: purchase.bidId, bidderId: purchase.bidderId, price: purchase.price)),
                    at: purchase.at)
            default:
                continue
            }
        }
        guard let state = auction.state else { return nil }
        if state.status == .running { run(.close, at: state.endsAt) }
        guard case .closed(.sold(let winner, _, let price))? = auction.state?.status else { return nil }
        return (winner, price)
    }
}
