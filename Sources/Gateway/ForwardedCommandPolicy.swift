import AuctionCore
import AuctionRuntime
import Storage

/// What the owner of an auction checks again when another node forwards it a command: that whom
/// the command is run for may run it. A node is trusted with a node's work (closing an auction,
/// the steps of a settlement), never with a user's: a bid, a purchase, a lot, an admin action or a
/// payment choice must come for a user who exists, whose token version is current, who holds the
/// role, and in whose name the command is (`bidderId`, `sellerId`, `buyerId`) — as this node's store
/// says, whatever the forwarding node said. The same rules the routes apply before submitting.
struct ForwardedCommandPolicy: Sendable {
    let directory: UserDirectory
    let users: any UserStore

    func check(_ issuer: CommandIssuer, _ command: AuctionCommand) async -> EngineError? {
        switch issuer {
        case .node: return await checkNodeWork(command)
        case .user(let user, let tokenVersion): return await check(command, for: user, tokenVersion: tokenVersion)
        }
    }

    private func check(_ command: AuctionCommand, for user: UserID, tokenVersion: Int64) async -> EngineError? {
        var standing: UserDirectory.Standing?
        do {
            standing = try await directory.standing(of: user, fresh: false)
            // A user this node has not cached yet, or a token newer than its cached standing (a
            // role change whose announcement has not arrived here): the store decides, not the cache.
            if standing.map({ $0.tokenVersion < tokenVersion }) ?? true {
                standing = try await directory.standing(of: user, fresh: true)
            }
        } catch {
            return .storeUnavailable("the user store did not answer: \(error)")
        }
        guard let standing, standing.tokenVersion == tokenVersion else {
            return .refusedByOwner(
                code: "token_revoked", detail: "The token this command was sent with is no longer valid.")
        }
        let roles = standing.roles
        switch command {
        case .create(let terms):
            guard roles.contains(.seller) || roles.contains(.admin) else { return Self.missing(.seller) }
            return terms.sellerId == user ? nil : Self.notTheirs("a lot offered by another seller")
        case .placeBid(let bid):
            return mayBid(standing) ?? (bid.bidderId == user ? nil : Self.notTheirs("a bid in another bidder's name"))
        case .buyNow(let purchase):
            return mayBid(standing)
                ?? (purchase.bidderId == user ? nil : Self.notTheirs("a purchase in another bidder's name"))
        case .cancel:
            return roles.contains(.admin) ? nil : Self.missing(.admin)
        case .close:
            return Self.notTheirs("closing an auction, which only its owner does")
        case .settle(let step):
            switch step {
            case .choosePaymentMethod(let buyer, _):
                return buyer == user ? nil : Self.notTheirs("paying another buyer's invoice")
            case .answerSecondChance(let bidder, let accept):
                guard bidder == user else { return Self.notTheirs("answering another bidder's offer") }
                return accept ? mayBid(standing) : (roles.contains(.bidder) ? nil : Self.missing(.bidder))
            case .startRefund, .cancel:
                return roles.contains(.admin) ? nil : Self.missing(.admin)
            default:
                return Self.notTheirs("a settlement step only the lot's owner takes")
            }
        }
    }

    /// A node's own work: closes and settlement steps. A payment method chosen by a node (the owner
    /// charging a card on file) must be one the buyer saved.
    private func checkNodeWork(_ command: AuctionCommand) async -> EngineError? {
        switch command {
        case .close:
            return nil
        case .create, .placeBid, .buyNow, .cancel:
            return Self.notTheirs("a user's command without the user")
        case .settle(let step):
            switch step {
            case .answerSecondChance, .startRefund, .cancel:
                return Self.notTheirs("a user's settlement step without the user")
            case .choosePaymentMethod(let buyer, let method):
                do {
                    let saved = try await users.paymentMethods(of: buyer)
                    return saved.contains { $0.id == method }
                        ? nil : Self.notTheirs("a payment method the buyer has not saved")
                } catch {
                    return .storeUnavailable("the user store did not answer: \(error)")
                }
            default:
                return nil
            }
        }
    }

    private func mayBid(_ standing: UserDirectory.Standing) -> EngineError? {
        guard standing.roles.contains(.bidder) else { return Self.missing(.bidder) }
        guard !standing.blockedFromBidding else {
            return .refusedByOwner(code: APIError.biddingBlocked.code, detail: APIError.biddingBlocked.detail)
        }
        return nil
    }

    private static func missing(_ role: Role) -> EngineError {
        .refusedByOwner(code: "forbidden", detail: "This needs the \(role.rawValue) role.")
    }

    private static func notTheirs(_ what: String) -> EngineError {
        .refusedByOwner(code: "not_your_command", detail: "Refused by the auction's owner: \(what).")
    }
}
