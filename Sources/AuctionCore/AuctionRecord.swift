/// A finished auction's whole history as one document: what the archive keeps of a lot once
/// nothing more happens to it by itself, and what analytics read (sell-through, hammer against
/// starting price and reserve, bids and bidders, when bids came relative to the close,
/// extensions). Built by folding the lot's log, so it says exactly what the log says.
///
/// Bidders are kept by account and by paddle (the archive is the house's, not the public's);
/// maxima are not kept: they are secrets of the live auction, not history.
public struct AuctionRecord: Hashable, Sendable, Codable {
    public struct Bid: Hashable, Sendable, Codable {
        public var bidId: String
        public var bidderId: String
        public var paddle: Int?
        /// The price after this bid (the lot's current price, not the bidder's maximum).
        public var price: Int64
        public var at: Timestamp
        /// Whether this was a buy-now purchase.
        public var boughtNow: Bool

        public init(bidId: String, bidderId: String, paddle: Int?, price: Int64, at: Timestamp, boughtNow: Bool) {
            self.bidId = bidId
            self.bidderId = bidderId
            self.paddle = paddle
            self.price = price
            self.at = at
            self.boughtNow = boughtNow
        }
    }

    public struct Extension: Hashable, Sendable, Codable {
        public var endsAt: Timestamp
        public var byBidId: String

        public init(endsAt: Timestamp, byBidId: String) {
            self.endsAt = endsAt
            self.byBidId = byBidId
        }
    }

    public enum Result: String, Hashable, Sendable, Codable {
        case sold, unsold, cancelled
    }

    public var auctionId: String
    /// The seq of the last event folded: a record is replaced only by one of a longer log.
    public var seq: Int64
    public var saleId: String?
    public var sellerId: String
    public var title: String
    public var currency: String
    public var startingPrice: Int64
    public var reservePrice: Int64?
    public var buyNowPrice: Int64?
    public var opensAt: Timestamp
    /// The end the terms set; `endedAt` is when it did end (later after extensions).
    public var closesAt: Timestamp
    public var endedAt: Timestamp
    public var result: Result
    /// Why it was unsold (`no_bids`, `reserve_not_met`), or the cancellation's reason.
    public var reason: String?
    public var hammer: Int64?
    public var winnerId: String?
    public var winnerPaddle: Int?
    public var bids: [Bid]
    public var extensions: [Extension]
    /// The settlement's last phase (`settled`, `refunded`, `unsold`, `cancelled`), for a sold lot.
    public var settlement: String?
    public var captured: Int64?
    public var refunded: Int64?

    public var bidderCount: Int { Set(bids.map(\.bidderId)).count }

    public init(
        auctionId: String, seq: Int64, saleId: String?, sellerId: String, title: String, currency: String,
        startingPrice: Int64, reservePrice: Int64?, buyNowPrice: Int64?, opensAt: Timestamp, closesAt: Timestamp,
        endedAt: Timestamp, result: Result, reason: String?, hammer: Int64?, winnerId: String?, winnerPaddle: Int?,
        bids: [Bid], extensions: [Extension], settlement: String?, captured: Int64?, refunded: Int64?
    ) {
        self.auctionId = auctionId
        self.seq = seq
        self.saleId = saleId
        self.sellerId = sellerId
        self.title = title
        self.currency = currency
        self.startingPrice = startingPrice
        self.reservePrice = reservePrice
        self.buyNowPrice = buyNowPrice
        self.opensAt = opensAt
        self.closesAt = closesAt
        self.endedAt = endedAt
        self.result = result
        self.reason = reason
        self.hammer = hammer
        self.winnerId = winnerId
        self.winnerPaddle = winnerPaddle
        self.bids = bids
        self.extensions = extensions
        self.settlement = settlement
        self.captured = captured
        self.refunded = refunded
    }

    /// The record of `auction`'s log, when the log is of a finished auction: closed unsold,
    /// cancelled, or sold with its settlement finished. Nil for a log that is not (yet), or not
    /// a valid log. `paddles` names bidders' paddles where known.
    public static func finished(
        _ auction: AuctionID, events: [AuctionEvent], paddles: [UserID: Int] = [:]
    ) -> AuctionRecord? {
        var state = Auction(id: auction)
        var bids: [Bid] = []
        var extensions: [Extension] = []
        var ended: (at: Timestamp, result: Result, reason: String?)?
        for event in events {
            guard (try? state.apply(event)) != nil else { return nil }
            switch event {
            case .bidAccepted(let bid):
                bids.append(
                    Bid(
                        bidId: bid.bidId.rawValue, bidderId: bid.bidderId.rawValue, paddle: paddles[bid.bidderId],
                        price: bid.price.minorUnits, at: bid.at, boughtNow: false))
            case .boughtNow(let purchase):
                bids.append(
                    Bid(
                        bidId: purchase.bidId.rawValue, bidderId: purchase.bidderId.rawValue,
                        paddle: paddles[purchase.bidderId], price: purchase.price.minorUnits, at: purchase.at,
                        boughtNow: true))
            case .extended(let extended):
                extensions.append(Extension(endsAt: extended.endsAt, byBidId: extended.byBidId.rawValue))
            case .closed(let closed):
                switch closed.result {
                case .sold: ended = (closed.at, .sold, nil)
                case .unsold(let why): ended = (closed.at, .unsold, why.rawValue)
                }
            case .cancelled(let cancelled):
                ended = (cancelled.at, .cancelled, cancelled.reason)
            case .created, .settlement:
                break
            }
        }
        guard let live = state.state, let ended else { return nil }
        let settlement = live.settlement
        if ended.result == .sold, settlement?.phase?.isFinished != true { return nil }
        var winner: (id: UserID, price: Money)?
        if case .closed(.sold(let id, _, let price)) = live.status { winner = (id, price) }
        let terms = live.terms
        return AuctionRecord(
            auctionId: auction.rawValue, seq: state.seq, saleId: terms.saleId?.rawValue,
            sellerId: terms.sellerId.rawValue, title: terms.title, currency: terms.currency.code,
            startingPrice: terms.startingPrice.minorUnits, reservePrice: terms.reservePrice?.minorUnits,
            buyNowPrice: terms.buyNowPrice?.minorUnits, opensAt: terms.opensAt, closesAt: terms.closesAt,
            endedAt: ended.at, result: ended.result, reason: ended.reason, hammer: winner?.price.minorUnits,
            winnerId: winner?.id.rawValue, winnerPaddle: winner.flatMap { paddles[$0.id] }, bids: bids,
            extensions: extensions, settlement: settlement?.phase?.rawValue,
            captured: settlement?.captured?.minorUnits, refunded: settlement?.refunded?.minorUnits)
    }

    /// This record brought up to `live`, the same lot further on, when its log was compacted after
    /// the record was written (so the events before the snapshot are only here). Only settlement
    /// events follow an end: the bids, extensions and result stay; the seq and the settlement's
    /// phase and amounts are the live lot's. Nil when `live` is another lot, behind this record,
    /// or not finished.
    public func continued(to live: Auction) -> AuctionRecord? {
        guard live.id.rawValue == auctionId, live.seq >= seq, let state = live.state else { return nil }
        let settlement = state.settlement
        if result == .sold, settlement?.phase?.isFinished != true { return nil }
        var record = self
        record.seq = live.seq
        record.settlement = settlement?.phase?.rawValue
        record.captured = settlement?.captured?.minorUnits
        record.refunded = settlement?.refunded?.minorUnits
        return record
    }
}
