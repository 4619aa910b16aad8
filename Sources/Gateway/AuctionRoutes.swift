import AuctionCore
import Foundation
import Hummingbird
import Node
import Storage

/// Auctions: creating one, listings and one auction (from the read model, or the log when asked), cancelling one.
extension GatewayAPI {
    func addAuctionRoutes(to api: RouterGroup<GatewayContext>) {
        api.post("/auctions", use: createAuction)
        api.get("/auctions", use: listAuctions)
        api.get("/auctions/:id", use: auction)
        api.post("/auctions/:id/cancel", use: cancel)
    }

    @Sendable func createAuction(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        guard caller.roles.contains(.seller) || caller.roles.contains(.admin) else { throw APIError.forbidden(.seller) }
        let body = try CreateAuctionRequest.decode(try await Self.body(request, context))
        guard let currency = Currency(code: body.currency) else {
            throw APIError.malformed("Unsupported currency '\(body.currency)'.")
        }
        let id =
            try body.id.map { raw throws(APIError) -> AuctionID in
                guard let id = AuctionID(rawValue: raw) else {
                    throw APIError.malformed("An auction id has 1 to 64 of A–Z a–z 0–9 _ - . : (not only dots)")
                }
                return id
            } ?? AuctionID(rawValue: "a-" + UUID().uuidString.lowercased())!
        guard let closesAt = Timestamps.parse(body.closesAt) else {
            throw APIError.malformed("Field 'closesAt' must be an RFC 3339 time.")
        }
        let opensAt =
            try body.opensAt.map { text throws(APIError) -> Timestamp in
                guard let time = Timestamps.parse(text) else {
                    throw APIError.malformed("Field 'opensAt' must be an RFC 3339 time.")
                }
                return time
            } ?? clock.now()
        let saleId = try body.saleId.map { raw throws(APIError) -> SaleID in
            guard let id = SaleID(rawValue: raw) else { throw APIError.malformed("Invalid 'saleId'.") }
            return id
        }
        let money = { (amount: Int64) in Money(minorUnits: amount, currency: currency) }
        let terms = AuctionTerms(
            auctionId: id, sellerId: caller.userId, saleId: saleId, title: body.title,
            startingPrice: money(body.startingPrice),
            reservePrice: body.reservePrice.map(money), buyNowPrice: body.buyNowPrice.map(money), opensAt: opensAt,
            closesAt: closesAt, extensionWindow: .seconds(body.extensionWindowSeconds ?? 120),
            fees: configuration.fees)
        // Refused here rather than at the owner: invalid terms never cross the wire, and the answer
        // is the owner's own rule either way.
        do {
            try terms.validate(now: clock.now())
        } catch {
            throw APIError.rejected(error)
        }
        let accepted = try Self.unwrap(await node.submit(.create(terms), to: id, as: caller.issuer))
        var response = try Self.json(await view(accepted.summary, for: caller.userId), status: .created)
        response.headers[.location] = "/v1/auctions/\(id)"
        return response
    }

    /// `GET /v1/auctions?status=open|closing_soon|ended|all&sale=…&limit=…`, from this node's read
    /// model (soonest end first).
    @Sendable func listAuctions(_ request: Request, context: GatewayContext) async throws -> Response {
        let query = request.uri.queryParameters
        let status = query.get("status") ?? "open"
        guard ["open", "closing_soon", "ended", "all"].contains(status) else {
            throw APIError.malformed("'status' is one of open, closing_soon, ended, all.")
        }
        let sale = query.get("sale")
        let limit = min(max(query.get("limit").flatMap(Int.init) ?? 100, 1), 1_000)
        let now = clock.now()
        let soon = now.advanced(by: .seconds(600))
        let summaries = node.readModel.list(
            { summary in
                if let sale, summary.saleId?.rawValue != sale { return false }
                let running = summary.status == .running
                switch status {
                case "open": return running && summary.opensAt <= now && now < summary.endsAt
                case "closing_soon": return running && now < summary.endsAt && summary.endsAt <= soon
                case "ended": return !running
                default: return true
                }
            }, limit: limit
        )
        return try Self.json(["auctions": await views(summaries, now: now)])
    }

    /// `GET /v1/auctions/{id}`: from this node's read model (its `seq` says how fresh), or with
    /// `?consistent=true` from the durable log.
    @Sendable func auction(_ request: Request, context: GatewayContext) async throws -> Response {
        let id = try Self.auctionId(context)
        let viewer = context.identity?.userId
        if request.uri.queryParameters.get("consistent") != "true", let summary = node.readModel.summary(of: id) {
            return try Self.json(await view(summary, for: viewer))
        }
        let restored: Auction
        do {
            restored = try await events.load(id).restore(id)
        } catch {
            throw APIError.storeUnavailable
        }
        guard let summary = restored.summary else { throw APIError.rejected(.auctionNotFound) }
        return try Self.json(await view(summary, for: viewer))
    }

    @Sendable func cancel(_ request: Request, context: GatewayContext) async throws -> Response {
        let admin = try await freshAdmin(context)
        let id = try Self.auctionId(context)
        let body = try CancelRequest.decode(try await Self.body(request, context))
        do {
            try Auction.validateCancelReason(body.reason)
        } catch {
            throw APIError.rejected(error)
        }
        let accepted = try Self.unwrap(await node.submit(.cancel(reason: body.reason), to: id, as: admin.issuer))
        return try Self.json(await view(accepted.summary, for: admin.userId))
    }
}
