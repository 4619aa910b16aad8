import AuctionCore
import Hummingbird
import Payments
import Storage

/// A saved payment method as its owner sees it: the provider's token and the card's brand and
/// last four digits — never more of the card.
struct PaymentMethodView: Codable, Sendable {
    var id: String
    var brand: String
    var last4: String
    var savedAt: String
    /// The one a lot the user wins is charged with (the most recently saved).
    var isDefault: Bool
}

struct PaymentMethodList: Codable, Sendable {
    var paymentMethods: [PaymentMethodView]
}

struct BiddingBlockView: Codable, Sendable {
    var auctionId: String
    var blockedAt: String
    var liftedAt: String?
    var liftedBy: String?
}

struct BiddingBlockList: Codable, Sendable {
    var userId: String
    var blockedFromBidding: Bool
    var blocks: [BiddingBlockView]
}

extension GatewayAPI {
    // MARK: - Payment methods on file

    /// `GET /v1/me/payment-methods`: the caller's saved methods, the default first.
    @Sendable func myPaymentMethods(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        return try Self.json(PaymentMethodList(paymentMethods: try await savedMethods(of: caller.userId)))
    }

    /// `POST /v1/me/payment-methods` `{"paymentMethod": "pm_…"}`: saves a provider token as the
    /// caller's default after the provider has said what it is (422 when it does not know it).
    /// The lots the caller wins from now on are charged with it with no action from them.
    @Sendable func savePaymentMethod(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let body = try PaymentMethodRequest.decode(try await Self.body(request, context))
        guard let method = PaymentMethodID(rawValue: body.paymentMethod) else {
            throw APIError.malformed("A payment method is a provider token of 1 to 64 of A–Z a–z 0–9 _ - . :")
        }
        guard let provider else {
            throw APIError(
                .serviceUnavailable, code: "payments_not_configured",
                detail: "This cluster has no payment provider configured (payments.provider.url).",
                headers: [.retryAfter: "60"])
        }
        let details: PaymentMethodDetails
        do throws(ProviderError) {
            details = try await provider.retrieve(paymentMethod: method)
        } catch {
            switch error {
            case .refused(_, let code, _) where code == "resource_missing":
                throw APIError(
                    .unprocessableContent, code: "payment_method_unknown",
                    detail: "The payment provider does not know the payment method '\(method.rawValue)'.")
            case .declined, .refused:
                throw APIError(
                    .unprocessableContent, code: "payment_method_refused",
                    detail: "The payment provider refused the payment method: \(error).")
            default:
                throw APIError(
                    .serviceUnavailable, code: "provider_unavailable",
                    detail: "The payment provider did not answer; try again shortly.", headers: [.retryAfter: "5"])
            }
        }
        let saved = SavedPaymentMethod(
            id: method, brand: details.card?.brand ?? "unknown", last4: details.card?.last4 ?? "",
            savedAt: clock.now())
        do {
            try await users.savePaymentMethod(saved, for: caller.userId)
        } catch .unknownUser {
            throw APIError.tokenRevoked
        } catch {
            throw APIError.storeUnavailable
        }
        return try Self.json(
            PaymentMethodList(paymentMethods: try await savedMethods(of: caller.userId)), status: .created)
    }

    /// `DELETE /v1/me/payment-methods/{method}`: forgets a saved method (404 when not saved).
    @Sendable func removePaymentMethod(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        guard let method = context.parameters.get("method").flatMap(PaymentMethodID.init(rawValue:)) else {
            throw Self.noSuchPaymentMethod
        }
        let removed: Bool
        do {
            removed = try await users.removePaymentMethod(method, of: caller.userId)
        } catch {
            throw APIError.storeUnavailable
        }
        guard removed else { throw Self.noSuchPaymentMethod }
        return Response(status: .noContent)
    }

    private static let noSuchPaymentMethod = APIError(
        .notFound, code: "payment_method_not_found", detail: "You have no such saved payment method.")

    private func savedMethods(of user: UserID) async throws(APIError) -> [PaymentMethodView] {
        let methods: [SavedPaymentMethod]
        do {
            methods = try await users.paymentMethods(of: user)
        } catch {
            throw APIError.storeUnavailable
        }
        return methods.enumerated().map { index, method in
            PaymentMethodView(
                id: method.id.rawValue, brand: method.brand, last4: method.last4,
                savedAt: Timestamps.format(method.savedAt), isDefault: index == 0)
        }
    }

    // MARK: - Blocks from bidding (admin)

    /// `GET /v1/users/{id}/bidding-blocks` (admin): the user's blocks after defaults, in force or
    /// lifted.
    @Sendable func biddingBlocks(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let user = try Self.userId(context)
        return try Self.json(try await blockList(of: user))
    }

    /// `DELETE /v1/users/{id}/bidding-blocks` (admin): lifts every block in force; the user may bid
    /// again on every node at once (404 `no_bidding_block` when none was in force).
    @Sendable func liftBiddingBlocks(_ request: Request, context: GatewayContext) async throws -> Response {
        let admin = try await freshAdmin(context)
        let user = try Self.userId(context)
        let lifted: Int
        do {
            lifted = try await users.liftBiddingBlocks(of: user, by: admin.userId, at: clock.now())
        } catch {
            throw APIError.storeUnavailable
        }
        guard lifted > 0 else {
            throw APIError(
                .notFound, code: "no_bidding_block", detail: "No block from bidding is in force for this user.")
        }
        await userChanged(user)
        return try Self.json(try await blockList(of: user))
    }

    private static func userId(_ context: GatewayContext) throws(APIError) -> UserID {
        guard let id = context.parameters.get("id").flatMap(UserID.init(rawValue:)) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        return id
    }

    private func blockList(of user: UserID) async throws(APIError) -> BiddingBlockList {
        let blocks: [BiddingBlock]
        let stored: StoredUser?
        do {
            stored = try await users.user(id: user)
            blocks = try await users.biddingBlocks(of: user)
        } catch {
            throw APIError.storeUnavailable
        }
        guard let stored else { throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.") }
        return BiddingBlockList(
            userId: user.rawValue, blockedFromBidding: stored.blockedFromBidding,
            blocks: blocks.map {
                BiddingBlockView(
                    auctionId: $0.auction.rawValue, blockedAt: Timestamps.format($0.blockedAt),
                    liftedAt: $0.liftedAt.map(Timestamps.format), liftedBy: $0.liftedBy?.rawValue)
            })
    }
}

extension GatewayAPI {
    /// The caller's payment methods, and an admin's view of a user's bidding blocks.
    func addAccountRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/me/payment-methods", use: myPaymentMethods)
        api.post("/me/payment-methods", use: savePaymentMethod)
        api.delete("/me/payment-methods/:method", use: removePaymentMethod)
        api.get("/users/:id/bidding-blocks", use: biddingBlocks)
        api.delete("/users/:id/bidding-blocks", use: liftBiddingBlocks)
    }
}
