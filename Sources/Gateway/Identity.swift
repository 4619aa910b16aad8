public import AuctionCore

/// What a user may do. Bidders bid; sellers create auctions for their lots; admins cancel auctions
/// and grant roles.
public enum Role: String, Sendable, Codable, CaseIterable, Hashable {
    case bidder
    case seller
    case admin
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

    public init(userId: UserID, username: String, roles: Set<Role>, tokenVersion: Int64 = 0) {
        self.userId = userId
        self.username = username
        self.roles = roles
        self.tokenVersion = tokenVersion
    }

    func require(_ role: Role) throws(APIError) {
        guard roles.contains(role) else { throw APIError.forbidden(role) }
    }
}
