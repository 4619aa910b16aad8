/// What anyone may see of an auction at one seq: no bidder's maximum, no reserve amount.
///
/// Why a separate small value: replies and read models carry it across actors and nodes, and it
/// must never expose the secret parts of `AuctionState` nor share its (large) receipt storage.
public struct AuctionSummary: Hashable, Sendable, Codable {
    public var auctionId: AuctionID
    public var seq: Int64
    public var sellerId: UserID
    public var saleId: SaleID?
    public var title: String
    public var price: Money
    public var minimumNextBid: Money
    public var leaderId: UserID?
    public var bidCount: Int
    public var opensAt: Timestamp
    public var endsAt: Timestamp
    public var hasReserve: Bool
    public var reserveMet: Bool
    public var buyNowPrice: Money?
    public var status: AuctionState.Status

    public init(
        auctionId: AuctionID, seq: Int64, sellerId: UserID, saleId: SaleID?, title: String, price: Money,
        minimumNextBid: Money, leaderId: UserID?, bidCount: Int, opensAt: Timestamp, endsAt: Timestamp,
        hasReserve: Bool, reserveMet: Bool, buyNowPrice: Money?, status: AuctionState.Status
    ) {
        self.auctionId = auctionId
        self.seq = seq
        self.sellerId = sellerId
        self.saleId = saleId
        self.title = title
        self.price = price
        self.minimumNextBid = minimumNextBid
        self.leaderId = leaderId
        self.bidCount = bidCount
        self.opensAt = opensAt
        self.endsAt = endsAt
        self.hasReserve = hasReserve
        self.reserveMet = reserveMet
        self.buyNowPrice = buyNowPrice
        self.status = status
    }
}

extension Auction {
    /// The public view of the auction; nil before it is created.
    public var summary: AuctionSummary? { state?.summary(auction: id, seq: seq) }
}

extension AuctionState {
    /// The public view of this state as auction `id` at `seq`.
    public func summary(auction id: AuctionID, seq: Int64) -> AuctionSummary {
        AuctionSummary(
            auctionId: id, seq: seq, sellerId: terms.sellerId, saleId: terms.saleId, title: terms.title, price: price,
            minimumNextBid: minimumNextBid, leaderId: leader?.bidderId, bidCount: bidCount, opensAt: terms.opensAt,
            endsAt: endsAt, hasReserve: terms.reservePrice != nil, reserveMet: reserveMet,
            buyNowPrice: buyNowAvailable ? terms.buyNowPrice : nil, status: status)
    }
}
