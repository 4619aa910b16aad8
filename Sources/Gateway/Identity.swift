public import AuctionCore

/// What a user may do. Bidders bid; sellers create auctions for their lots; admins cancel auctions
/// and grant roles; services (other systems of the house, an account an admin grants the role to)
/// follow the event feed, which names bidders by account.
public enum Role: String, Sendable, Codable, CaseIterable, Hashable {
    case bidder
    case seller
    case admin
    case service

    /// The roles a person may give themselves when they sign up.
    static let selfService: Set<Role> = [.bidder, .seller]
}

/// Who sent a request, as its verified token says (roles as the store says now, once the
/// authentication middleware has checked the token's version).
public struct Identity: Sendable, Hashable {
    public var userId: UserID
    public var username: String
    public var roles: Set<Role>
    /// The user's token version when the token was issued; the token is valid only while the
    /// user's current version is the same.
    public var tokenVersion: Int64
    /// The user defaulted on a lot and no admin has lifted the block yet (as the store says now,
    /// like the roles — never as the token says).
    public var blockedFromBidding = false

    public init(userId: UserID, username: String, roles: Set<Role>, tokenVersion: Int64 = 0) {
        self.userId = userId
        self.username = username
        self.roles = roles
        self.tokenVersion = tokenVersion
    }

    func require(_ role: Role) throws(APIError) {
        guard roles.contains(role) else { throw APIError.forbidden(role) }
    }

    /// Whom a command is run for, as it travels to the auction's owner (checked again there).
    public var issuer: CommandIssuer { .user(userId, tokenVersion: tokenVersion) }

    /// A bidder whom no default blocks: bids, buy-now and second-chance purchases.
    func requireMayBid() throws(APIError) {
        try require(.bidder)
        guard !blockedFromBidding else { throw APIError.biddingBlocked }
    }
}
