/// Everything that can be asked of an auction. Commands are requests: the auction decides whether
/// they become events.
public enum AuctionCommand: Hashable, Sendable, Codable {
    case create(AuctionTerms)
    case placeBid(PlaceBid)
    case buyNow(BuyNow)
    /// Sent by the auction's close timer once its end has passed.
    case close
    /// Sent by an admin; the gateway checks the role.
    case cancel(reason: String)
    /// A step of the sold lot's settlement: by its owner's settlement driver (what falls due, the
    /// provider's answers), by the buyer (a payment method, a second-chance answer), by an admin.
    case settle(SettlementCommand)

}

/// A proxy bid: the bidder states the most they will pay; the engine bids for them, one increment
/// at a time, up to that maximum.
public struct PlaceBid: Hashable, Sendable, Codable {
    public var bidId: BidID
    public var bidderId: UserID
    public var maximum: Money

    public init(bidId: BidID, bidderId: UserID, maximum: Money) {
        self.bidId = bidId
        self.bidderId = bidderId
        self.maximum = maximum
    }
}

/// Buying the lot at its buy-now price, which ends the sale. The bidder states the price they agree
/// to, so a client never buys at a price it did not show.
public struct BuyNow: Hashable, Sendable, Codable {
    public var bidId: BidID
    public var bidderId: UserID
    public var price: Money

    public init(bidId: BidID, bidderId: UserID, price: Money) {
        self.bidId = bidId
        self.bidderId = bidderId
        self.price = price
    }
}
