import AuctionCore
import Foundation
import Storage

/// The public form of an auction event for clients: no bidder's maximum, no reserve amount, and
/// bidders by paddle (`paddles`: those of the users `namedBidders` lists), never by account.
enum EventView {
    static func serverSentEvent(_ stored: StoredEvent, paddles: [UserID: Int]) -> String {
        let (type, object) = payload(stored, paddles: paddles)
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return "id: \(stored.seq)\nevent: \(type)\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
    }

    /// One WebSocket message: the SSE `data` object plus `type`.
    static func json(_ stored: StoredEvent, paddles: [UserID: Int]) -> String {
        var (type, object) = payload(stored, paddles: paddles)
        object["type"] = type
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A bidder's paddle as a JSON value (null while the store could not say).
    private static func paddle(_ user: UserID, _ paddles: [UserID: Int]) -> Any {
        paddles[user].map { $0 as Any } ?? NSNull()
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

    private static func payload(_ stored: StoredEvent, paddles: [UserID: Int]) -> (String, [String: Any]) {
        let type = stored.event.kind.streamName
        var object = fields(of: stored.event, paddles: paddles)
        object["seq"] = stored.seq
        object["auctionId"] = stored.auction.rawValue
        return (type, object)
    }

    /// What a stream shows of `event` (its name is `AuctionEvent.Kind.streamName`).
    static func fields(of event: AuctionEvent, paddles: [UserID: Int]) -> [String: Any] {
        switch event {
        case .created(let created):
            let terms = created.terms
            var fields: [String: Any] = [
                "title": terms.title, "sellerId": terms.sellerId.rawValue, "currency": terms.currency.code,
                "startingPrice": terms.startingPrice.minorUnits, "opensAt": Timestamps.format(terms.opensAt),
                "closesAt": Timestamps.format(terms.closesAt), "hasReserve": terms.reservePrice != nil,
            ]
            if let buyNow = terms.buyNowPrice { fields["buyNowPrice"] = buyNow.minorUnits }
            if let sale = terms.saleId { fields["saleId"] = sale.rawValue }
            return fields
        case .bidAccepted(let bid):
            return [
                "bidId": bid.bidId.rawValue, "bidderPaddle": paddle(bid.bidderId, paddles),
                "price": bid.price.minorUnits, "leaderPaddle": paddle(bid.leaderId, paddles),
                "at": Timestamps.format(bid.at),
            ]
        case .boughtNow(let purchase):
            return [
                "bidId": purchase.bidId.rawValue, "bidderPaddle": paddle(purchase.bidderId, paddles),
                "price": purchase.price.minorUnits,
                "at": Timestamps.format(purchase.at),
            ]
        case .extended(let extended):
            return ["endsAt": Timestamps.format(extended.endsAt)]
        case .closed(let closed):
            switch closed.result {
            case .sold(let winner, _, let price):
                return [
                    "result": "sold", "winnerPaddle": paddle(winner, paddles), "price": price.minorUnits,
                    "at": Timestamps.format(closed.at),
                ]
            case .unsold(let reason):
                return ["result": "unsold", "reason": reason.rawValue, "at": Timestamps.format(closed.at)]
            }
        case .cancelled(let cancelled):
            return ["reason": cancelled.reason, "at": Timestamps.format(cancelled.at)]
        case .settlement:
            // The buyer's invoice and payment steps are theirs (see `/v1/me/settlements`): the public
            // stream only keeps its seq contiguous, so a watcher sees no gap.
            return [:]
        }
    }
}

/// The public form of a bidder's notification (only ever sent to that bidder).
enum NotificationView {
    static func serverSentEvent(_ notification: BidderNotification) -> String {
        let object: [String: Any] = [
            "id": notification.id, "kind": notification.kind.rawValue, "auctionId": notification.auctionId.rawValue,
            "seq": notification.seq, "title": notification.title, "price": notification.price.minorUnits,
            "currency": notification.price.currency.code, "endsAt": Timestamps.format(notification.endsAt),
            "at": Timestamps.format(notification.at),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return
            "id: \(notification.id)\nevent: \(notification.kind.rawValue)\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
    }
}
