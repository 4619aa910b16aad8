import AuctionCore
import Foundation
import Storage

/// The public form of an auction event for clients: no bidder's maximum, no reserve amount, and
/// bidders by paddle (`paddles`: those of the users `namedBidders` lists), never by account.
/// Encoded from ``PublicEvent`` (sorted keys), the same document on SSE and WebSocket.
enum EventView {
    static func serverSentEvent(_ stored: StoredEvent, paddles: [UserID: Int]) -> String {
        let event = PublicEvent(stored, paddles: paddles)
        return "id: \(stored.seq)\nevent: \(stored.event.kind.streamName)\ndata: \(encoded(event))\n\n"
    }

    /// One WebSocket message: the SSE `data` object plus `type`.
    static func json(_ stored: StoredEvent, paddles: [UserID: Int]) -> String {
        var event = PublicEvent(stored, paddles: paddles)
        event.type = stored.event.kind.streamName
        return encoded(event)
    }

    /// One encoder for every stream message (not changed after this, so sharing it is safe).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    static func encoded(_ value: some Encodable) -> String {
        String(decoding: (try? encoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The bidders the public form of `event` shows.
    static func namedBidders(_ event: AuctionEvent) -> Set<UserID> {
        switch event {
        case .bidAccepted(let bid): [bid.bidderId, bid.leaderId]
        case .boughtNow(let purchase): [purchase.bidderId]
        case .closed(let closed):
            if case .sold(let winner, _, _) = closed.result { [winner] } else { [] }
        default: []
        }
    }
}

/// A bidder's paddle on a stream: the number, or null while the store could not say (never left
/// out, so a client tells "not known yet" from a field the event does not have).
enum PaddleField: Encodable, Equatable {
    case known(Int)
    case unknown

    init(_ user: UserID, _ paddles: [UserID: Int]) {
        self = paddles[user].map(PaddleField.known) ?? .unknown
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .known(let paddle): try container.encode(paddle)
        case .unknown: try container.encodeNil()
        }
    }
}

/// What a stream shows of an auction event (its name is `AuctionEvent.Kind.streamName`): the
/// fields of its kind, the others absent. Settlement steps are the buyer's (see
/// `/v1/me/settlements`): on the public stream they only keep the seq contiguous.
struct PublicEvent: Encodable {
    /// Only in WebSocket messages (SSE names the event on its `event:` line).
    var type: String?
    var seq: Int64
    var auctionId: String
    // created
    var title: String?
    var sellerId: String?
    var saleId: String?
    var currency: String?
    var startingPrice: Int64?
    var buyNowPrice: Int64?
    var hasReserve: Bool?
    var opensAt: String?
    var closesAt: String?
    // bids and buy-nows
    var bidId: String?
    var bidderPaddle: PaddleField?
    var leaderPaddle: PaddleField?
    var price: Int64?
    // extended
    var endsAt: String?
    // closed and cancelled
    var result: String?
    var winnerPaddle: PaddleField?
    var reason: String?
    var at: String?

    init(_ stored: StoredEvent, paddles: [UserID: Int]) {
        seq = stored.seq
        auctionId = stored.auction.rawValue
        switch stored.event {
        case .created(let created):
            let terms = created.terms
            title = terms.title
            sellerId = terms.sellerId.rawValue
            saleId = terms.saleId?.rawValue
            currency = terms.currency.code
            startingPrice = terms.startingPrice.minorUnits
            buyNowPrice = terms.buyNowPrice?.minorUnits
            hasReserve = terms.reservePrice != nil
            opensAt = Timestamps.format(terms.opensAt)
            closesAt = Timestamps.format(terms.closesAt)
        case .bidAccepted(let bid):
            bidId = bid.bidId.rawValue
            bidderPaddle = PaddleField(bid.bidderId, paddles)
            leaderPaddle = PaddleField(bid.leaderId, paddles)
            price = bid.price.minorUnits
            at = Timestamps.format(bid.at)
        case .boughtNow(let purchase):
            bidId = purchase.bidId.rawValue
            bidderPaddle = PaddleField(purchase.bidderId, paddles)
            price = purchase.price.minorUnits
            at = Timestamps.format(purchase.at)
        case .extended(let extended):
            endsAt = Timestamps.format(extended.endsAt)
        case .closed(let closed):
            at = Timestamps.format(closed.at)
            switch closed.result {
            case .sold(let winner, _, let hammer):
                result = "sold"
                winnerPaddle = PaddleField(winner, paddles)
                price = hammer.minorUnits
            case .unsold(let why):
                result = "unsold"
                reason = why.rawValue
            }
        case .cancelled(let cancelled):
            reason = cancelled.reason
            at = Timestamps.format(cancelled.at)
        case .settlement:
            break
        }
    }
}

/// The public form of a bidder's notification (only ever sent to that bidder).
enum NotificationView {
    struct Body: Encodable {
        var id: String
        var kind: String
        var auctionId: String
        var seq: Int64
        var title: String
        var price: Int64
        var currency: String
        var endsAt: String
        var at: String
    }

    static func serverSentEvent(_ notification: BidderNotification) -> String {
        let body = Body(
            id: notification.id, kind: notification.kind.rawValue, auctionId: notification.auctionId.rawValue,
            seq: notification.seq, title: notification.title, price: notification.price.minorUnits,
            currency: notification.price.currency.code, endsAt: Timestamps.format(notification.endsAt),
            at: Timestamps.format(notification.at))
        return "id: \(notification.id)\nevent: \(notification.kind.rawValue)\ndata: \(EventView.encoded(body))\n\n"
    }
}
