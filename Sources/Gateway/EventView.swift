import AuctionCore
import Foundation
import Storage

/// The public form of an auction event for clients: no bidder's maximum, no reserve amount.
enum EventView {
    static func serverSentEvent(_ stored: StoredEvent) -> String {
        let (type, object) = payload(stored)
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return "id: \(stored.seq)\nevent: \(type)\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
    }

    /// One WebSocket message: the SSE `data` object plus `type`.
    static func json(_ stored: StoredEvent) -> String {
        var (type, object) = payload(stored)
        object["type"] = type
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private static func payload(_ stored: StoredEvent) -> (String, [String: Any]) {
        var (type, object) = fields(of: stored.event)
        object["seq"] = stored.seq
        object["auctionId"] = stored.auction.rawValue
        return (type, object)
    }

    static func fields(of event: AuctionEvent) -> (String, [String: Any]) {
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
            return ("created", fields)
        case .bidAccepted(let bid):
            return (
                "bid",
                [
                    "bidId": bid.bidId.rawValue, "bidderId": bid.bidderId.rawValue, "price": bid.price.minorUnits,
                    "leaderId": bid.leaderId.rawValue, "at": Timestamps.format(bid.at),
                ]
            )
        case .boughtNow(let purchase):
            return (
                "bought_now",
                [
                    "bidId": purchase.bidId.rawValue, "bidderId": purchase.bidderId.rawValue,
                    "price": purchase.price.minorUnits,
                    "at": Timestamps.format(purchase.at),
                ]
            )
        case .extended(let extended):
            return ("extended", ["endsAt": Timestamps.format(extended.endsAt)])
        case .closed(let closed):
            switch closed.result {
            case .sold(let winner, _, let price):
                return (
                    "closed",
                    [
                        "result": "sold", "winnerId": winner.rawValue, "price": price.minorUnits,
                        "at": Timestamps.format(closed.at),
                    ]
                )
            case .unsold(let reason):
                return ("closed", ["result": "unsold", "reason": reason.rawValue, "at": Timestamps.format(closed.at)])
            }
        case .cancelled(let cancelled):
            return ("cancelled", ["reason": cancelled.reason, "at": Timestamps.format(cancelled.at)])
        case .settlement:
            // The buyer's invoice and payment steps are theirs (see `/v1/me/settlements`): the public
            // stream only keeps its seq contiguous, so a watcher sees no gap.
            return ("settlement", [:])
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
