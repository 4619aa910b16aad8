/// A fact the auction decided, in the order it decided it. The per-auction sequence of events is
/// the durable truth: folding them with `Auction.apply` rebuilds exactly the live state.
///
/// Events carry their results (price, leader) so that subscribers and read models never need to
/// re-run the auction rules. They also carry bidders' maxima, which are secret: project them away
/// before an event leaves the owning node for a client.
public enum AuctionEvent: Hashable, Sendable {
    case created(AuctionCreated)
    case bidAccepted(BidAccepted)
    case boughtNow(BoughtNow)
    case extended(ClosingExtended)
    case closed(AuctionClosed)
    case cancelled(AuctionCancelled)
    /// A step of the sold lot's settlement, after `closed` (see `Settlement`).
    case settlement(SettlementEvent)

    /// The stable name of the event kind, as stored in the log.
    public var kind: Kind {
        switch self {
        case .created: .created
        case .bidAccepted: .bidAccepted
        case .boughtNow: .boughtNow
        case .extended: .extended
        case .closed: .closed
        case .cancelled: .cancelled
        case .settlement: .settlement
        }
    }

    /// The bid or purchase this event accepted, if it accepted one.
    public var acceptedBidId: BidID? {
        switch self {
        case .bidAccepted(let bid): bid.bidId
        case .boughtNow(let purchase): purchase.bidId
        case .created, .extended, .closed, .cancelled, .settlement: nil
        }
    }

    /// The one table of event names: the stored kind (`rawValue`, a column of the log), the name
    /// outside services know it by (`publicName`: the feed and webhooks), and the name the live
    /// streams give it (`streamName`: the SSE `event:` and WebSocket `type` that clients, the web
    /// room and the chaos checker read). Each name is stable: changing one breaks a reader.
    public enum Kind: String, Hashable, Sendable, Codable, CaseIterable {
        case created = "created"
        case bidAccepted = "bid_accepted"
        case boughtNow = "bought_now"
        case extended = "extended"
        case closed = "closed"
        case cancelled = "cancelled"
        case settlement = "settlement"

        /// The name services outside the cluster know the kind by (the event feed): the seed's
        /// `bid_placed` and `auction_closed`, and the others named after them. Stable: consumers
        /// filter on it.
        public var publicName: String {
            switch self {
            case .created: "auction_created"
            case .bidAccepted: "bid_placed"
            case .boughtNow: "bought_now"
            case .extended: "auction_extended"
            case .closed: "auction_closed"
            case .cancelled: "auction_cancelled"
            case .settlement: "settlement_updated"
            }
        }

        public init?(publicName: String) {
            guard let kind = Self.allCases.first(where: { $0.publicName == publicName }) else { return nil }
            self = kind
        }

        /// The name of the kind in an auction's live stream (SSE `event:`, WebSocket `type`).
        public var streamName: String {
            switch self {
            case .created: "created"
            case .bidAccepted: "bid"
            case .boughtNow: "bought_now"
            case .extended: "extended"
            case .closed: "closed"
            case .cancelled: "cancelled"
            case .settlement: "settlement"
            }
        }
    }
}

public struct AuctionCreated: Hashable, Sendable, Codable {
    public var terms: AuctionTerms
    public var at: Timestamp

    public init(terms: AuctionTerms, at: Timestamp) {
        self.terms = terms
        self.at = at
    }
}

/// A bid was accepted. `price` and `leader…` are the auction's visible state after it; when the
/// leader is someone else, this bid was immediately outbid by the leader's proxy.
public struct BidAccepted: Hashable, Sendable, Codable {
    public var bidId: BidID
    public var bidderId: UserID
    public var maximum: Money
    public var at: Timestamp
    public var price: Money
    public var leaderBidId: BidID
    public var leaderId: UserID

    public init(
        bidId: BidID, bidderId: UserID, maximum: Money, at: Timestamp, price: Money, leaderBidId: BidID,
        leaderId: UserID
    ) {
        self.bidId = bidId
        self.bidderId = bidderId
        self.maximum = maximum
        self.at = at
        self.price = price
        self.leaderBidId = leaderBidId
        self.leaderId = leaderId
    }
}

/// The lot was bought at its buy-now price; a `closed` event follows in the same batch.
public struct BoughtNow: Hashable, Sendable, Codable {
    public var bidId: BidID
    public var bidderId: UserID
    public var price: Money
    public var at: Timestamp

    public init(bidId: BidID, bidderId: UserID, price: Money, at: Timestamp) {
        self.bidId = bidId
        self.bidderId = bidderId
        self.price = price
        self.at = at
    }
}

/// Soft close: a late bid moved the end of the auction.
public struct ClosingExtended: Hashable, Sendable, Codable {
    public var endsAt: Timestamp
    public var byBidId: BidID

    public init(endsAt: Timestamp, byBidId: BidID) {
        self.endsAt = endsAt
        self.byBidId = byBidId
    }
}

public struct AuctionClosed: Hashable, Sendable, Codable {
    public var result: AuctionResult
    public var at: Timestamp

    public init(result: AuctionResult, at: Timestamp) {
        self.result = result
        self.at = at
    }
}

public struct AuctionCancelled: Hashable, Sendable, Codable {
    public var reason: String
    public var at: Timestamp

    public init(reason: String, at: Timestamp) {
        self.reason = reason
        self.at = at
    }
}

/// How an auction ended. Decided once, by the `closed` event.
public enum AuctionResult: Hashable, Sendable, Codable {
    case sold(winnerId: UserID, bidId: BidID, price: Money)
    case unsold(UnsoldReason)
}

public enum UnsoldReason: String, Hashable, Sendable, Codable {
    case noBids = "no_bids"
    case reserveNotMet = "reserve_not_met"
}
