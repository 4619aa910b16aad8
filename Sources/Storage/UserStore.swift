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
    /// Replaces the roles of `id` and raises its token version (tokens issued before carry the old
    /// roles, so they stop working); `unknownUser` when there is no such user.
    func setRoles(_ roles: [String], of id: UserID) async throws(UserStoreError)
    /// Raises the token version of `id`: every token issued before stops working (log out
    /// everywhere); `unknownUser` when there is no such user.
    func revokeTokens(of id: UserID) async throws(UserStoreError)

    /// Failed logins of `username` (whether or not it exists) and until when it is locked.
    func loginFailures(of username: String) async throws(UserStoreError) -> LoginFailures?
    /// Counts one more failed login of `username` and locks it as `policy` says; returns the new
    /// state. One statement, so nodes counting at once lose no failure.
    func recordLoginFailure(of username: String, now: Timestamp, policy: LoginLockPolicy) async throws(UserStoreError)
        -> LoginFailures
    /// Forgets the failures of `username` (after a successful login).
    func clearLoginFailures(of username: String) async throws(UserStoreError)

    /// Saves `method` for `user` as their default (saving one again makes it the default again);
    /// `unknownUser` when there is no such user.
    func savePaymentMethod(_ method: SavedPaymentMethod, for user: UserID) async throws(UserStoreError)
    /// The user's saved payment methods, the default (most recently saved) first.
    func paymentMethods(of user: UserID) async throws(UserStoreError) -> [SavedPaymentMethod]
    /// Removes a saved method; whether there was one.
    func removePaymentMethod(_ method: PaymentMethodID, of user: UserID) async throws(UserStoreError) -> Bool

    /// Blocks `user` from bidding because they did not pay for `auction` by its deadline. Once per
    /// (user, auction): blocking again after an admin lifted it changes nothing, so the settlement
    /// owner may repeat it after a failover. Whether a new block was recorded.
    func blockFromBidding(_ user: UserID, defaultedOn auction: AuctionID, at: Timestamp)
        async throws(UserStoreError) -> Bool
    /// Lifts every block of `user` still in force (admin); how many.
    func liftBiddingBlocks(of user: UserID, by admin: UserID, at: Timestamp) async throws(UserStoreError) -> Int
    /// The user's blocks, in force or lifted, newest first.
    func biddingBlocks(of user: UserID) async throws(UserStoreError) -> [BiddingBlock]

    /// The paddle number of `user` in `scope` (a sale, or a lot sold on its own — see
    /// `PaddleScope`), assigned on first use: 101, 102, … in the order bidders first bid there.
    /// The same answer on every node and forever after; numbers may have gaps (two nodes assigning
    /// a first paddle to the same bidder at once use one number and skip the other).
    func paddle(of user: UserID, in scope: String) async throws(UserStoreError) -> Int
    /// Every paddle assigned in each of `scopes` (a scope without any is left out).
    func paddles(in scopes: [String]) async throws(UserStoreError) -> [String: [UserID: Int]]
    /// Every scope `user` has a paddle in (where they bid), with that paddle.
    func paddles(of user: UserID) async throws(UserStoreError) -> [String: Int]
}

/// A payment method a user keeps on file: the provider's token (never a card number) and what the
/// provider said about it, so the owner of a lot they win can charge it with no action from them.
public struct SavedPaymentMethod: Hashable, Sendable {
    public var id: PaymentMethodID
    public var brand: String
    public var last4: String
    public var savedAt: Timestamp

    public init(id: PaymentMethodID, brand: String, last4: String, savedAt: Timestamp) {
        self.id = id
        self.brand = brand
        self.last4 = last4
        self.savedAt = savedAt
    }
}

/// Why a user may not bid: they defaulted on `auction`. In force until an admin lifts it.
public struct BiddingBlock: Hashable, Sendable {
    public var auction: AuctionID
    public var blockedAt: Timestamp
    public var liftedAt: Timestamp?
    public var liftedBy: UserID?

    public init(auction: AuctionID, blockedAt: Timestamp, liftedAt: Timestamp?, liftedBy: UserID?) {
        self.auction = auction
        self.blockedAt = blockedAt
        self.liftedAt = liftedAt
        self.liftedBy = liftedBy
    }

    public var inForce: Bool { liftedAt == nil }
}

/// Failed logins of one username, kept in the store so that every node counts the same ones.
public struct LoginFailures: Hashable, Sendable {
    public var failures: Int
    /// No login is tried before this time (the epoch when not locked).
    public var lockedUntil: Timestamp

    public init(failures: Int, lockedUntil: Timestamp) {
        self.failures = failures
        self.lockedUntil = lockedUntil
    }
}

/// When failed logins lock a username: the first `freeFailures` cost nothing; each one after locks
/// it for twice as long as the one before, from `firstLock` up to `maximumLock`.
///
/// Why: an online guesser gets a handful of tries, then an exponentially slower trickle; a user
/// who mistypes a few times is not locked out; and a lock never lasts longer than `maximumLock`,
/// so an attacker cannot lock someone out for good.
public struct LoginLockPolicy: Hashable, Sendable {
    public var freeFailures: Int
    public var firstLock: Duration
    public var maximumLock: Duration

    public init(freeFailures: Int = 5, firstLock: Duration = .seconds(1), maximumLock: Duration = .seconds(900)) {
        self.freeFailures = freeFailures
        self.firstLock = firstLock
        self.maximumLock = maximumLock
    }

    /// How long the `failures`-th failure locks the username.
    public func lock(afterFailures failures: Int) -> Duration {
        guard failures > freeFailures else { return .zero }
        let doublings = min(failures - freeFailures - 1, 30)
        return min(firstLock * (1 << doublings), maximumLock)
    }
}

public struct StoredUser: Hashable, Sendable, CustomStringConvertible {
    public var id: UserID
    /// Lower case, 3–32 of `a–z 0–9 _ - .`.
    public var username: String
    public var passwordHash: String
    public var roles: [String]
    public var createdAt: Timestamp
    /// Raised on every role change and revocation; a token is valid only with the version it was
    /// issued with.
    public var tokenVersion: Int64
    /// A block from bidding is in force (`UserStore.blockFromBidding`); set when read, ignored when
    /// created.
    public var blockedFromBidding: Bool

    public init(
        id: UserID, username: String, passwordHash: String, roles: [String], createdAt: Timestamp,
        tokenVersion: Int64 = 0, blockedFromBidding: Bool = false
    ) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.roles = roles
        self.createdAt = createdAt
        self.tokenVersion = tokenVersion
        self.blockedFromBidding = blockedFromBidding
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

/// Where a paddle number holds: the sale a lot is in, or the lot itself when it is sold on its own
/// (a bidder keeps one paddle across a sale's lots). The one rule, for the gateway that assigns
/// paddles and the archive that records them.
public enum PaddleScope {
    public static func key(sale: SaleID?, auction: AuctionID) -> String {
        sale.map { "sale:\($0.rawValue)" } ?? "lot:\(auction.rawValue)"
    }
}
