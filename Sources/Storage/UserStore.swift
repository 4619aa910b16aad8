public import AuctionCore

/// Users and their credentials, in the same store as the auctions (PostgreSQL or SQLite).
///
/// Invariants: usernames are unique (case-insensitively: stored lower-cased); the password hash is
/// a slow KDF's output and is never logged (`StoredUser.description` leaves it out).
public protocol UserStore: Sendable {
    /// Creates `user`; `usernameTaken` when the name exists.
    func createUser(_ user: StoredUser) async throws(UserStoreError)
    func user(named username: String) async throws(UserStoreError) -> StoredUser?
    func user(id: UserID) async throws(UserStoreError) -> StoredUser?
    /// Replaces the roles of `id`; `unknownUser` when there is no such user.
    func setRoles(_ roles: [String], of id: UserID) async throws(UserStoreError)
}

public struct StoredUser: Hashable, Sendable, CustomStringConvertible {
    public var id: UserID
    /// Lower case, 3–32 of `a–z 0–9 _ - .`.
    public var username: String
    public var passwordHash: String
    public var roles: [String]
    public var createdAt: Timestamp

    public init(id: UserID, username: String, passwordHash: String, roles: [String], createdAt: Timestamp) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.roles = roles
        self.createdAt = createdAt
    }

    public var description: String { "user \(id) (\(username)) roles \(roles)" }
}

public enum UserStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    case usernameTaken
    case unknownUser
    case unavailable(String)

    public var description: String {
        switch self {
        case .usernameTaken: "username taken"
        case .unknownUser: "unknown user"
        case .unavailable(let detail): "user store unavailable: \(detail)"
        }
    }
}
