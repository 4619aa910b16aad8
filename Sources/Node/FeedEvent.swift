import AuctionCore
import Foundation
public import Storage

/// One event of the feed as a service outside the cluster reads it (`GET /v1/feed`, webhooks):
/// the public name of its kind (`AuctionEvent.Kind.publicName`), the cursor that resumes right
/// after it, and its facts.
/// Bidders are named by account (the feed is for the house's own services, a role an admin
/// grants); a bidder's maximum and the reserve amount never leave the owner.
public struct FeedEvent: Codable, Sendable, Equatable {
    public var cursor: String
    public var type: String
    public var auctionId: String
    public var seq: Int64
    public var at: String?
    public var title: String?
    public var sellerId: String?
    public var saleId: String?
    public var currency: String?
    public var startingPrice: Int64?
    public var hasReserve: Bool?
    public var buyNowPrice: Int64?
    public var opensAt: String?
    public var closesAt: String?
    public var bidId: String?
    public var bidderId: String?
    public var leaderId: String?
    public var price: Int64?
    public var endsAt: String?
    public var result: String?
    public var winnerId: String?
    public var reason: String?
    public var step: String?
    public var buyerId: String?
    public var amount: Int64?

    public init(_ entry: FeedEntry) {
        let event = entry.event.event
        cursor = entry.cursor.description
        type = event.kind.publicName
        auctionId = entry.event.auction.rawValue
        seq = entry.event.seq
        switch event {
        case .created(let created):
            let terms = created.terms
            at = created.at.rfc3339
            title = terms.title
            sellerId = terms.sellerId.rawValue
            saleId = terms.saleId?.rawValue
            currency = terms.currency.code
            startingPrice = terms.startingPrice.minorUnits
            hasReserve = terms.reservePrice != nil
            buyNowPrice = terms.buyNowPrice?.minorUnits
            opensAt = terms.opensAt.rfc3339
            closesAt = terms.closesAt.rfc3339
        case .bidAccepted(let bid):
            at = bid.at.rfc3339
            bidId = bid.bidId.rawValue
            bidderId = bid.bidderId.rawValue
            leaderId = bid.leaderId.rawValue
            price = bid.price.minorUnits
            currency = bid.price.currency.code
        case .boughtNow(let purchase):
            at = purchase.at.rfc3339
            bidId = purchase.bidId.rawValue
            bidderId = purchase.bidderId.rawValue
            price = purchase.price.minorUnits
            currency = purchase.price.currency.code
        case .extended(let extended):
            endsAt = extended.endsAt.rfc3339
        case .closed(let closed):
            at = closed.at.rfc3339
            switch closed.result {
            case .sold(let winner, let bid, let hammer):
                result = "sold"
                winnerId = winner.rawValue
                bidId = bid.rawValue
                price = hammer.minorUnits
                currency = hammer.currency.code
            case .unsold(let why):
                result = "unsold"
                reason = why.rawValue
            }
        case .cancelled(let cancelled):
            at = cancelled.at.rfc3339
            reason = cancelled.reason
        case .settlement(let settlement):
            fill(settlement)
        }
    }

    /// A settlement step: its name, when, and whom and how much it is about, where it says.
    private mutating func fill(_ settlement: SettlementEvent) {
        var money: Money?
        var person: UserID?
        let time: Timestamp
        switch settlement {
        case .opened(_, let buyer, let invoice, _, _, let t):
            (step, time, person, money) = ("opened", t, buyer, invoice.total)
        case .paymentMethodChosen(_, let t): (step, time) = ("payment_method_chosen", t)
        case .callStarted(_, let t): (step, time) = ("provider_call_started", t)
        case .authorized(_, _, let t): (step, time) = ("authorized", t)
        case .declined(_, let why, let t): (step, time, reason) = ("declined", t, why)
        case .captured(_, let captured, let t): (step, time, money) = ("captured", t, captured)
        case .callFailed(_, let why, let t): (step, time, reason) = ("provider_call_failed", t, why)
        case .payoutRecorded(let payout, let t): (step, time, money) = ("payout_recorded", t, payout)
        case .reminded(let t): (step, time) = ("reminded", t)
        case .defaulted(let buyer, let t): (step, time, person) = ("defaulted", t, buyer)
        case .secondChanceOffered(let offer, let t):
            (step, time, person, money) = ("second_chance_offered", t, offer.bidderId, offer.price)
        case .secondChanceAnswered(let bidder, let accepted, let t):
            (step, time, person) = (accepted ? "second_chance_accepted" : "second_chance_declined", t, bidder)
        case .secondChanceExpired(let t): (step, time) = ("second_chance_expired", t)
        case .unsold(let why, let t): (step, time, reason) = ("unsold", t, why)
        case .refunded(_, let refunded, let t): (step, time, money) = ("refunded", t, refunded)
        case .cancelled(let why, let t): (step, time, reason) = ("cancelled", t, why)
        }
        at = time.rfc3339
        buyerId = person?.rawValue
        amount = money?.minorUnits
        currency = money?.currency.code
    }
}
