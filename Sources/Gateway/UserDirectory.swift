import AuctionCore
import Storage
import Synchronization

/// What the store says about a user now — whether they exist, their roles, their token version,
/// whether a default blocks them from bidding — cached for a few seconds per node.
///
/// Why: a token is a signed snapshot of a user's roles; taking a role away or logging out must
/// stop it working before it expires. Each request compares its token's version with the user's
/// current one. Reading the store on every request would cost a query per request, so standings
/// are cached for `maximumAge`; a change made on any node is announced to every member, which drops
/// its entry at once (the age only bounds a missed announcement). Admin actions read the store
/// every time.
final class UserDirectory: Sendable {
    struct Standing: Sendable, Hashable {
        var roles: Set<Role>
        var tokenVersion: Int64
        var blockedFromBidding: Bool
    }

    private struct Entry {
        var standing: Standing?
        var fetchedAt: ContinuousClock.Instant
    }

    private let users: any UserStore
    let maximumAge: Duration
    private let entries = Mutex<[UserID: Entry]>([:])
    private static let maximumEntries = 100_000

    init(users: any UserStore, maximumAge: Duration) {
        self.users = users
        self.maximumAge = maximumAge
    }

    /// The user's standing (`nil`: no such user), from the cache when `fresh` is false and the entry
    /// is younger than `maximumAge`. When the store does not answer, a cached entry of any age is
    /// used for ordinary requests; otherwise the error goes up.
    func standing(of user: UserID, fresh: Bool) async throws(UserStoreError) -> Standing? {
        let now = ContinuousClock.now
        let cached = entries.withLock { $0[user] }
        if !fresh, let cached, now - cached.fetchedAt < maximumAge { return cached.standing }
        let stored: StoredUser?
        do {
            stored = try await users.user(id: user)
        } catch {
            if !fresh, let cached { return cached.standing }
            throw error
        }
        let standing = stored.map {
            Standing(
                roles: Set($0.roles.compactMap(Role.init(rawValue:))), tokenVersion: $0.tokenVersion,
                blockedFromBidding: $0.blockedFromBidding)
        }
        entries.withLock { entries in
            if entries.count >= Self.maximumEntries { entries.removeAll(keepingCapacity: true) }
            entries[user] = Entry(standing: standing, fetchedAt: now)
        }
        return standing
    }

    /// The standing of `identity`'s user now, or why its token no longer stands: 401
    /// `token_revoked` when the user is gone or the token's version is not the user's, 503 when the
    /// store cannot say (and nothing usable is cached).
    func currentStanding(of identity: Identity, fresh: Bool) async throws(APIError) -> Standing {
        let found: Standing?
        do {
            found = try await standing(of: identity.userId, fresh: fresh)
        } catch {
            throw APIError.storeUnavailable
        }
        guard let found, found.tokenVersion == identity.tokenVersion else { throw APIError.tokenRevoked }
        return found
    }

    /// Drops what is cached about `user` (its standing changed here or on another node).
    func forget(_ user: UserID) {
        _ = entries.withLock { $0.removeValue(forKey: user) }
    }
}
