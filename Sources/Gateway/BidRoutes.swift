import AuctionCore
import Hummingbird
import Node

/// Bids and buy-nows: forwarded to the auction's owner wherever it runs, answered with the receipt.
extension GatewayAPI {
    func addBidRoutes(to api: RouterGroup<GatewayContext>) {
        api.post("/auctions/:id/bids", use: bid)
        api.post("/auctions/:id/buy-now", use: buyNow)
    }

    @Sendable func bid(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        try caller.requireMayBid()
        let id = try Self.auctionId(context)
        let body = try BidRequest.decode(try await Self.body(request, context))
        let bid = PlaceBid(
            bidId: try Self.bidId(body.bidId), bidderId: caller.userId,
            maximum: try Self.money(body.maximum, body.currency))
        return try await submit(.placeBid(bid), to: id, for: caller)
    }

    @Sendable func buyNow(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        try caller.requireMayBid()
        let id = try Self.auctionId(context)
        let body = try BuyNowRequest.decode(try await Self.body(request, context))
        let purchase = BuyNow(
            bidId: try Self.bidId(body.bidId), bidderId: caller.userId, price: try Self.money(body.price, body.currency)
        )
        return try await submit(.buyNow(purchase), to: id, for: caller)
    }

    /// Gives `caller` their paddle in the lot's sale (before the bid is forwarded, so every logged
    /// bid has one), runs `command` on the auction's owner, counts the outcome and answers with the
    /// receipt.
    private func submit(_ command: AuctionCommand, to id: AuctionID, for caller: Identity) async throws -> Response {
        let paddle = try await paddles.assign(caller.userId, in: try await paddleScope(of: id))
        return try await bidResponse(
            counted(await node.submit(command, to: id, as: caller.issuer)), paddle: paddle, for: caller.userId)
    }

    /// Counts a bid's answer by outcome (or rejection code), then unwraps it.
    func counted(_ result: Result<CommandAccepted, EngineError>) throws(APIError) -> CommandAccepted {
        switch result {
        case .success(let accepted):
            metrics.bid(outcome: accepted.replayed ? "replayed" : accepted.receipt?.outcome.rawValue ?? "accepted")
        case .failure(let error):
            metrics.bid(outcome: error.code)
        }
        return try Self.unwrap(result)
    }

    func bidResponse(_ accepted: CommandAccepted, paddle: Int, for bidder: UserID) async throws -> Response {
        guard let receipt = accepted.receipt else {
            throw APIError(.internalServerError, code: "internal_error", detail: "No receipt.")
        }
        let view = BidView(
            bidId: receipt.bidId.rawValue, paddle: paddle, outcome: receipt.outcome.rawValue,
            replayed: accepted.replayed,
            seq: receipt.seq,
            maximum: receipt.maximum.minorUnits, priceAfter: receipt.price.minorUnits,
            auction: await self.view(accepted.summary, for: bidder))
        return try Self.json(view, status: accepted.replayed ? .ok : .created)
    }
}
