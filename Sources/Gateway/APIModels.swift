import AuctionCore
import Foundation

/// A request body decoded strictly: unknown fields and missing ones are a 400 naming the field.
protocol StrictRequest: Decodable {
    static var fields: Set<String> { get }
}

extension StrictRequest {
    /// Decodes `data` in one pass: the field names are checked against `fields` on the same parsed
    /// document the values are then read from.
    static func decode(_ data: Data) throws(APIError) -> Self {
        do {
            return try JSONDecoder().decode(Strict<Self>.self, from: data).value
        } catch let error as UnknownField {
            throw APIError.malformed("Unknown field '\(error.name)'.")
        } catch DecodingError.keyNotFound(let key, _) {
            throw APIError.malformed("Missing field '\(key.stringValue)'.")
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
            throw APIError.malformed("The body must be a JSON object.")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            throw APIError.malformed(
                "Field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type.")
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            throw APIError.malformed("The body must be a JSON object.")
        } catch {
            throw APIError.malformed("The body is not valid JSON for this request.")
        }
    }
}

/// A request body whose field names were checked before its values were decoded.
private struct Strict<Request: StrictRequest>: Decodable {
    var value: Request

    init(from decoder: any Decoder) throws {
        let names = try decoder.container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
        if let unknown = names.filter({ !Request.fields.contains($0) }).min() { throw UnknownField(name: unknown) }
        value = try Request(from: decoder)
    }
}

private struct UnknownField: Error {
    var name: String
}

private struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

struct RegisterRequest: StrictRequest {
    static let fields: Set<String> = ["username", "password", "roles"]
    var username: String
    var password: String
    var roles: [String]?
}

struct LoginRequest: StrictRequest {
    static let fields: Set<String> = ["username", "password"]
    var username: String
    var password: String
}

struct RolesRequest: StrictRequest {
    static let fields: Set<String> = ["roles"]
    var roles: [String]
}

struct CreateAuctionRequest: StrictRequest {
    static let fields: Set<String> = [
        "id", "title", "currency", "startingPrice", "reservePrice", "buyNowPrice", "opensAt", "closesAt",
        "extensionWindowSeconds", "saleId",
    ]
    var id: String?
    var title: String
    var currency: String
    var startingPrice: Int64
    var reservePrice: Int64?
    var buyNowPrice: Int64?
    var opensAt: String?
    var closesAt: String
    var extensionWindowSeconds: Int?
    var saleId: String?
}

struct BidRequest: StrictRequest {
    static let fields: Set<String> = ["bidId", "maximum", "currency"]
    var bidId: String
    /// The most the bidder will pay, in minor units.
    var maximum: Int64
    var currency: String
}

struct BuyNowRequest: StrictRequest {
    static let fields: Set<String> = ["bidId", "price", "currency"]
    var bidId: String
    var price: Int64
    var currency: String
}

struct CancelRequest: StrictRequest {
    static let fields: Set<String> = ["reason"]
    var reason: String
}

struct UserView: Codable, Sendable {
    var id: String
    var username: String
    var roles: [String]
    /// A default blocks the user from bidding until an admin lifts it.
    var blockedFromBidding = false
}

struct SessionView: Codable, Sendable {
    var token: String
    var tokenType = "Bearer"
    var expiresAt: String
}

/// What anyone may see of an auction (no maxima, no reserve amount, no bidder's account: bidders
/// appear by paddle — see `PaddleBook`).
struct AuctionView: Codable, Sendable {
    var id: String
    var seq: Int64
    var title: String
    var sellerId: String
    var saleId: String?
    var currency: String
    var price: Int64
    var minimumNextBid: Int64
    var leaderPaddle: Int?
    var bidCount: Int
    var opensAt: String
    var endsAt: String
    /// scheduled, open, ended, sold, unsold, cancelled
    var status: String
    var hasReserve: Bool
    var reserveMet: Bool
    var buyNowPrice: Int64?
    var winnerPaddle: Int?
    var unsoldReason: String?
    /// The caller's own paddle in the lot's sale, when they have one: they lead when it is
    /// `leaderPaddle`.
    var myPaddle: Int?

    /// `paddles`: those of the bidders the summary names (`AuctionSummary.namedBidders`) and of `viewer`.
    init(_ summary: AuctionSummary, now: Timestamp, paddles: [UserID: Int] = [:], viewer: UserID? = nil) {
        id = summary.auctionId.rawValue
        seq = summary.seq
        title = summary.title
        sellerId = summary.sellerId.rawValue
        saleId = summary.saleId?.rawValue
        currency = summary.price.currency.code
        price = summary.price.minorUnits
        minimumNextBid = summary.minimumNextBid.minorUnits
        leaderPaddle = summary.leaderId.flatMap { paddles[$0] }
        myPaddle = viewer.flatMap { paddles[$0] }
        bidCount = summary.bidCount
        opensAt = Timestamps.format(summary.opensAt)
        endsAt = Timestamps.format(summary.endsAt)
        hasReserve = summary.hasReserve
        reserveMet = summary.reserveMet
        buyNowPrice = summary.buyNowPrice?.minorUnits
        switch summary.status {
        case .running:
            status = now < summary.opensAt ? "scheduled" : now < summary.endsAt ? "open" : "ended"
        case .closed(.sold(let winner, _, _)):
            status = "sold"
            winnerPaddle = paddles[winner]
        case .closed(.unsold(let reason)):
            status = "unsold"
            unsoldReason = reason.rawValue
        case .cancelled:
            status = "cancelled"
        }
    }
}

struct BidView: Codable, Sendable {
    var bidId: String
    /// The bidder's paddle in the lot's sale.
    var paddle: Int
    /// leading, outbid, bought_now
    var outcome: String
    /// True when this bid id was accepted before and nothing new was recorded.
    var replayed: Bool
    var seq: Int64
    var maximum: Int64
    var priceAfter: Int64
    var auction: AuctionView
}

/// A lot the caller bid on (`GET /v1/me/bids`): the lot, and how far their own bids went.
struct MyLotView: Codable, Sendable {
    var auction: AuctionView
    /// The highest visible price one of the caller's bids reached (never their maximum).
    var highestPrice: Int64
    var bids: Int
    var leading: Bool
}

struct LeaderboardView: Codable, Sendable {
    /// A bidder's standing, by paddle (never by account).
    struct Standing: Codable, Sendable {
        var paddle: Int?
        var highestPrice: Int64
        var bids: Int
    }

    var auction: AuctionView
    var bidders: [Standing]
}

struct ActiveView: Codable, Sendable {
    var auction: AuctionView
    var recentBids: Int
}

extension AuctionSummary {
    /// The bidders a public view of this summary shows (by paddle): the leader and the winner.
    var namedBidders: Set<UserID> {
        var named: Set<UserID> = []
        if let leader = leaderId { named.insert(leader) }
        if case .closed(.sold(let winner, _, _)) = status { named.insert(winner) }
        return named
    }
}
