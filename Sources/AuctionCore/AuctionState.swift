/// The state of an existing auction: what its events add up to.
///
/// Invariants (kept by `Auction.decide`, checked by the property tests): `price` never decreases
/// and rises with every change of leader; `price <= leader.maximum`; the leader holds the highest
/// maximum, the earliest of equal maxima; once `status` is closed or cancelled it never changes.
public struct AuctionState: Hashable, Sendable, Codable {
    public internal(set) var terms: AuctionTerms
    /// The end, moved later by soft close.
    public internal(set) var endsAt: Timestamp
    /// The visible current price; the starting price until the first bid.
    public internal(set) var price: Money
    public internal(set) var leader: Leader?
    /// Accepted bids, outbid ones included.
    public internal(set) var bidCount: Int
    public internal(set) var status: Status
    /// The sold lot's settlement, from its first step on (nil before, and for unsold lots). Small —
    /// no per-bid data — so read models keep it too and answer invoices from it.
    public internal(set) var settlement: Settlement?

    public enum Status: Hashable, Sendable, Codable {
        case running
        case closed(AuctionResult)
        case cancelled(reason: String)
    }

    /// Where the auction is at `now`: the stored status, refined by the clock while it runs.
    public enum Phase: Hashable, Sendable {
        case scheduled
        case open
        /// The end has passed but the `closed` event is not decided yet: no bid is accepted.
        case ended
        case closed(AuctionResult)
        case cancelled
    }

    init(created: AuctionCreated) {
        terms = created.terms
        endsAt = created.terms.closesAt
        price = created.terms.startingPrice
        leader = nil
        bidCount = 0
        status = .running
    }

    /// Folds event number `seq` of auction `id` into `state` (nil before `created`). Throws, leaving
    /// `state` unchanged, when the event cannot follow it — only a corrupt or foreign log does that.
    ///
    /// Why a function of its own: `Auction.apply` adds the bid receipts on top of it, while read
    /// models fold only this, so they keep no per-bid history of their own.
    public static func advance(
        _ state: inout AuctionState?, with event: AuctionEvent, auction id: AuctionID, seq: Int64
    ) throws(EventApplicationError) {
        func broken(_ reason: String) -> EventApplicationError {
            EventApplicationError(auctionId: id, seq: seq, reason: reason)
        }
        if case .created(let created) = event {
            guard state == nil else { throw broken("created twice") }
            guard created.terms.auctionId == id else { throw broken("created for another auction") }
            state = AuctionState(created: created)
            return
        }
        guard let current = state else { throw broken("\(event.kind.rawValue) before created") }
        if case .settlement(let step) = event {
            guard case .closed(.sold) = current.status else { throw broken("settlement of a lot that was not sold") }
            var settlement = current.settlement ?? Settlement(auctionId: id)
            do {
                try settlement.apply(step)
            } catch {
                throw broken(error.reason)
            }
            state!.settlement = settlement
            return
        }
        guard current.status == .running else { throw broken("\(event.kind.rawValue) after the auction ended") }
        switch event {
        case .created:
            throw broken("created twice")
        case .bidAccepted(let bid):
            guard bid.maximum.currency == current.terms.currency, bid.price.currency == current.terms.currency else {
                throw broken("bid in a foreign currency")
            }
            if bid.leaderBidId == bid.bidId {
                guard bid.leaderId == bid.bidderId else { throw broken("leader does not match the bid") }
                state!.leader = Leader(bidderId: bid.bidderId, bidId: bid.bidId, maximum: bid.maximum)
            } else {
                guard current.leader?.bidId == bid.leaderBidId, current.leader?.bidderId == bid.leaderId else {
                    throw broken("bid names a leader the auction does not have")
                }
            }
            state!.price = bid.price
            state!.bidCount += 1
        case .boughtNow(let purchase):
            guard purchase.price.currency == current.terms.currency else {
                throw broken("purchase in a foreign currency")
            }
            state!.leader = Leader(bidderId: purchase.bidderId, bidId: purchase.bidId, maximum: purchase.price)
            state!.price = purchase.price
            state!.bidCount += 1
        case .extended(let extended):
            guard extended.endsAt > current.endsAt else { throw broken("extension does not move the end later") }
            state!.endsAt = extended.endsAt
        case .closed(let closed):
            state!.status = .closed(closed.result)
        case .cancelled(let cancelled):
            state!.status = .cancelled(reason: cancelled.reason)
        case .settlement:
            break  // Folded above: it follows `closed`.
        }
    }

    public func phase(at now: Timestamp) -> Phase {
        switch status {
        case .closed(let result): return .closed(result)
        case .cancelled: return .cancelled
        case .running:
            if now < terms.opensAt { return .scheduled }
            if now < endsAt { return .open }
            return .ended
        }
    }

    /// The lowest maximum a bidder other than the leader must offer now.
    public var minimumNextBid: Money {
        guard leader != nil else { return terms.startingPrice }
        return Money(
            minorUnits: price.minorUnits + terms.increments.increment(at: price.minorUnits), currency: terms.currency)
    }

    /// Whether the reserve is met; always true without a reserve.
    public var reserveMet: Bool {
        guard let reserve = terms.reservePrice else { return leader != nil }
        return leader != nil && price >= reserve
    }

    /// Buy now is offered until the first bid; with a reserve, until the reserve is met.
    public var buyNowAvailable: Bool {
        guard terms.buyNowPrice != nil else { return false }
        guard leader != nil else { return true }
        return terms.reservePrice != nil && !reserveMet
    }
}

/// The bidder currently winning, with their secret maximum.
public struct Leader: Hashable, Sendable, Codable {
    public var bidderId: UserID
    public var bidId: BidID
    public var maximum: Money

    public init(bidderId: UserID, bidId: BidID, maximum: Money) {
        self.bidderId = bidderId
        self.bidId = bidId
        self.maximum = maximum
    }
}

/// The acceptance of one bid as the auction recorded it; returned again, unchanged, when the same
/// bid id is resubmitted.
public struct BidReceipt: Hashable, Sendable, Codable {
    public var bidId: BidID
    public var bidderId: UserID
    public var maximum: Money
    /// The sequence number of the event that accepted the bid.
    public var seq: Int64
    public var at: Timestamp
    public var outcome: Outcome
    /// The visible price right after the bid.
    public var price: Money

    public enum Outcome: String, Hashable, Sendable, Codable {
        /// The bid leads.
        case leading
        /// The bid was accepted and raised the price, but the leader's proxy outbid it at once.
        case outbid
        /// The bid bought the lot at its buy-now price.
        case boughtNow = "bought_now"
    }

    public init(
        bidId: BidID, bidderId: UserID, maximum: Money, seq: Int64, at: Timestamp, outcome: Outcome, price: Money
    ) {
        self.bidId = bidId
        self.bidderId = bidderId
        self.maximum = maximum
        self.seq = seq
        self.at = at
        self.outcome = outcome
        self.price = price
    }
}

extension Identifier: CodingKeyRepresentable {}
