/// Something a bidder wants to hear about an auction they bid on: outbid, won, lost, extended,
/// cancelled. Derived from the log alone (the state before an event and the event), so every node
/// derives the same notifications with the same ids, and a client that reconnects elsewhere can
/// drop the ones it has seen by id.
public struct BidderNotification: Hashable, Sendable, Codable {
    public enum Kind: String, Hashable, Sendable, Codable, CaseIterable {
        /// Someone else leads now (also when the leader's proxy beat a bid at once).
        case outbid
        case won
        /// The auction closed with someone else as the winner, or unsold.
        case lost
        /// Soft close moved the end.
        case extended
        case cancelled
        /// The lot is the recipient's to pay: `price` is the invoice total, `endsAt` the deadline.
        case paymentDue = "payment_due"
        /// Half of the time to pay has passed.
        case paymentReminder = "payment_reminder"
        /// The card was declined, or a capture refused: choose another method before `endsAt`.
        case paymentFailed = "payment_failed"
        /// The winner defaulted: the recipient may buy the lot at `price` until `endsAt`.
        case secondChanceOffer = "second_chance_offer"
        /// Paid in full.
        case paid
    }

    /// `auction:seq:kind`: unique per recipient, the same on every node.
    public var id: String { "\(auctionId.rawValue):\(seq):\(kind.rawValue)" }
    public var userId: UserID
    public var kind: Kind
    public var auctionId: AuctionID
    /// The seq of the event that caused it.
    public var seq: Int64
    public var title: String
    public var price: Money
    public var endsAt: Timestamp
    /// When the event happened (its time in the log).
    public var at: Timestamp

    public init(
        userId: UserID, kind: Kind, auctionId: AuctionID, seq: Int64, title: String, price: Money, endsAt: Timestamp,
        at: Timestamp
    ) {
        self.userId = userId
        self.kind = kind
        self.auctionId = auctionId
        self.seq = seq
        self.title = title
        self.price = price
        self.endsAt = endsAt
        self.at = at
    }
}

extension Auction {
    /// The notifications `event` caused, called on the auction right after applying it (see
    /// ``AuctionState/notifications(auction:seq:after:previousLeader:bidders:)``).
    public func notifications(
        after event: AuctionEvent, previousLeader: UserID?, bidders: some Collection<UserID>
    ) -> [BidderNotification] {
        state?.notifications(auction: id, seq: seq, after: event, previousLeader: previousLeader, bidders: bidders)
            ?? []
    }
}

extension AuctionState {
    /// The notifications `event` (number `seq` of auction `id`) caused, called on the state right
    /// after folding it in. The caller passes what the state no longer tells: who led before, and
    /// who has bid (every bidder, the one of this event included), so this costs nothing per earlier
    /// bid. Pure.
    public func notifications(
        auction id: AuctionID, seq: Int64, after event: AuctionEvent, previousLeader: UserID?,
        bidders: some Collection<UserID>
    ) -> [BidderNotification] {
        func note(_ user: UserID, _ kind: BidderNotification.Kind, at time: Timestamp) -> BidderNotification {
            BidderNotification(
                userId: user, kind: kind, auctionId: id, seq: seq, title: terms.title, price: price, endsAt: endsAt,
                at: time)
        }
        func everyone() -> [UserID] { bidders.sorted { $0.rawValue < $1.rawValue } }
        switch event {
        case .bidAccepted(let bid):
            var outbid: Set<UserID> = []
            if let previousLeader, previousLeader != bid.leaderId { outbid.insert(previousLeader) }
            if bid.bidderId != bid.leaderId { outbid.insert(bid.bidderId) }
            return outbid.sorted { $0.rawValue < $1.rawValue }.map { note($0, .outbid, at: bid.at) }
        case .extended(let extended):
            // The bid that moved the end was placed one extension window before the new end.
            let at = extended.endsAt.advanced(by: .zero - terms.extensionWindow)
            return everyone().map { note($0, .extended, at: at) }
        case .closed(let closed):
            var winner: UserID?
            if case .sold(let winnerId, _, _) = closed.result { winner = winnerId }
            var recipients = everyone()
            if let winner, !recipients.contains(winner) { recipients.append(winner) }
            return recipients.map { note($0, $0 == winner ? .won : .lost, at: closed.at) }
        case .cancelled(let cancelled):
            return everyone().map { note($0, .cancelled, at: cancelled.at) }
        case .settlement(let step):
            return settlementNotifications(after: step, auction: id, seq: seq)
        case .created, .boughtNow:
            return []
        }
    }
}

extension AuctionState {
    /// What a settlement step tells its buyer (or the runner-up), called right after applying it:
    /// amounts are the invoice's, the time is the deadline to act by.
    func settlementNotifications(after step: SettlementEvent, auction id: AuctionID, seq: Int64)
        -> [BidderNotification]
    {
        guard let settlement, let buyer = settlement.buyerId, let invoice = settlement.invoice,
            let dueBy = settlement.dueBy
        else { return [] }
        func note(_ user: UserID, _ kind: BidderNotification.Kind, _ price: Money, _ by: Timestamp, at time: Timestamp)
            -> [BidderNotification]
        {
            [
                BidderNotification(
                    userId: user, kind: kind, auctionId: id, seq: seq, title: terms.title, price: price, endsAt: by,
                    at: time)
            ]
        }
        switch step {
        case .opened(_, _, _, _, _, let at):
            return note(buyer, .paymentDue, invoice.total, dueBy, at: at)
        case .reminded(let at):
            return note(buyer, .paymentReminder, invoice.total, dueBy, at: at)
        case .declined(_, _, let at):
            return note(buyer, .paymentFailed, invoice.total, dueBy, at: at)
        case .callFailed(_, _, let at) where settlement.phase == .declined:
            return note(buyer, .paymentFailed, invoice.total, dueBy, at: at)
        case .secondChanceOffered(let offer, let at):
            return note(offer.bidderId, .secondChanceOffer, offer.price, offer.expiresAt, at: at)
        case .payoutRecorded(_, let at):
            return note(buyer, .paid, invoice.total, dueBy, at: at)
        default:
            return []
        }
    }
}
