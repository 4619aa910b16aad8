public import AuctionCore

/// What a user may do. Bidders bid; sellers create auctions for their lots; admins cancel auctions
/// and grant roles.
public enum Role: String, Sendable, Codable, CaseIterable, Hashable {
    case bidder
    case seller
    case admin
}

/// Who sent a request, as its verified token says.
public struct Identity: Sendable, Hashable {
    public var userId: UserID
    public var username: String
    public var roles: Set<Role>

    public init(userId: UserID, username: String, roles: Set<Role>) {
        self.userId = userId
        self.username = username
        self.roles = roles
    }

    func require(_ role: Role) throws(APIError) {
        guard roles.contains(role) else { throw APIError.forbidden(role) }
    }
}
