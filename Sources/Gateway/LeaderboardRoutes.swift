import AuctionCore
import Foundation
import Hummingbird
import Node

/// Leaderboards and the caller's bids: served from this node's read model, never by the owner.
extension GatewayAPI {
    func addLeaderboardRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/auctions/:id/leaderboard", use: leaderboard)
        api.get("/leaderboards/most-active", use: mostActive)
        api.get("/sales/:id/top", use: saleTop)
        api.get("/me/bids", use: myBids)
    }

    /// `GET /v1/auctions/{id}/leaderboard`: the leader, then bidders by the highest price their bids
    /// reached — never their maxima.
    @Sendable func leaderboard(_ request: Request, context: GatewayContext) async throws -> Response {
        let id = try Self.auctionId(context)
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        guard let (summary, standings) = node.readModel.topBidders(of: id, limit: limit) else {
            throw APIError.rejected(.auctionNotFound)
        }
        let scope = PaddleBook.scope(of: summary)
        let named = await paddles.paddles(
            of: summary.namedBidders.union(standings.map(\.bidderId)), viewer: context.identity?.userId, in: scope)
        let bidders = standings.map {
            LeaderboardView.Standing(
                paddle: named[$0.bidderId], highestPrice: $0.highestPrice.minorUnits, bids: $0.bids)
        }
        return try Self.json(
            LeaderboardView(
                auction: AuctionView(summary, now: clock.now(), paddles: named, viewer: context.identity?.userId),
                bidders: bidders))
    }

    /// `GET /v1/me/bids`: the lots the caller bid on — the scopes they hold a paddle in, the lots
    /// of those sales they have a standing in (this node's read model) — running lots first, soonest
    /// end first, then ended ones, latest first; at most `limit` (100, up to 500).
    @Sendable func myBids(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 100, 1), 500)
        let scopes: [String: Int]
        do {
            scopes = try await users.paddles(of: caller.userId)
        } catch {
            throw APIError.storeUnavailable
        }
        var mine: [(summary: AuctionSummary, standing: BidderStanding)] = []
        for scope in scopes.keys {
            let lots: [AuctionID]
            if scope.hasPrefix("lot:"), let id = AuctionID(rawValue: String(scope.dropFirst(4))) {
                lots = [id]
            } else if scope.hasPrefix("sale:"), let sale = SaleID(rawValue: String(scope.dropFirst(5))) {
                lots = node.readModel.highestPrices(inSale: sale, limit: .max).map(\.auctionId)
            } else {
                continue
            }
            for id in lots {
                guard let (summary, standings) = node.readModel.topBidders(of: id, limit: .max),
                    let standing = standings.first(where: { $0.bidderId == caller.userId })
                else { continue }
                mine.append((summary, standing))
            }
        }
        mine.sort { a, b in
            let (aRunning, bRunning) = (a.summary.status == .running, b.summary.status == .running)
            if aRunning != bRunning { return aRunning }
            return aRunning ? a.summary.endsAt < b.summary.endsAt : a.summary.endsAt > b.summary.endsAt
        }
        let shown = mine.prefix(limit)
        let views = await views(shown.map(\.summary), for: caller.userId, now: clock.now())
        return try Self.json([
            "lots": zip(shown, views).map { lot, view in
                MyLotView(
                    auction: view, highestPrice: lot.standing.highestPrice.minorUnits, bids: lot.standing.bids,
                    leading: lot.summary.leaderId == caller.userId)
            }
        ])
    }

    /// `GET /v1/leaderboards/most-active?minutes=5`: auctions by bids in the last minutes.
    @Sendable func mostActive(_ request: Request, context: GatewayContext) async throws -> Response {
        let minutes = min(max(request.uri.queryParameters.get("minutes").flatMap(Int.init) ?? 5, 1), 60)
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        let now = clock.now()
        let active = node.readModel.mostActive(since: now.advanced(by: .seconds(-60 * minutes)), limit: limit)
        let views = await views(active.map(\.summary), now: now)
        return try Self.json([
            "auctions": zip(active, views).map { ActiveView(auction: $1, recentBids: $0.recentBids) }
        ])
    }

    /// `GET /v1/sales/{id}/top`: a sale's lots by price, highest first.
    @Sendable func saleTop(_ request: Request, context: GatewayContext) async throws -> Response {
        guard let sale = context.parameters.get("id").flatMap(SaleID.init(rawValue:)) else {
            throw APIError(.notFound, code: "sale_not_found", detail: "There is no such sale.")
        }
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        let now = clock.now()
        return try Self.json([
            "auctions": await views(node.readModel.highestPrices(inSale: sale, limit: limit), now: now)
        ])
    }
}
