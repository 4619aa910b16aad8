import AuctionCore
import Storage
import Synchronization

/// Paddle numbers: how bidders see each other. Auction houses register each bidder for a sale and
/// show them by paddle, never by name; the API does the same — a public view never carries another
/// bidder's account id, only their paddle in the lot's sale (a lot sold on its own is its own
/// scope). The store assigns numbers (the same on every node, forever); this is each node's cache.
///
/// A bidder gets their paddle before their first bid in a scope is forwarded, so every bid in a
/// log has a paddle by the time it is shown. Bids older than paddles get theirs when first shown.
final class PaddleBook: Sendable {
    private struct Scope {
        var paddles: [UserID: Int] = [:]
        /// When the whole scope was last read from the store (absent users were absent then).
        var loadedAt: ContinuousClock.Instant?
    }

    private let store: any UserStore
    private let scopes = Mutex<[String: Scope]>([:])
    /// Scopes cached at most; past it an arbitrary one is dropped (it is read again when needed).
    private let capacity: Int
    /// How long "no paddle" is believed for a viewer (their first bid may be on another node).
    private let absenceAge: Duration

    init(store: any UserStore, capacity: Int = 10_000, absenceAge: Duration = .seconds(5)) {
        self.store = store
        self.capacity = capacity
        self.absenceAge = absenceAge
    }

    static func scope(sale: SaleID?, auction: AuctionID) -> String {
        PaddleScope.key(sale: sale, auction: auction)
    }

    static func scope(of summary: AuctionSummary) -> String {
        scope(sale: summary.saleId, auction: summary.auctionId)
    }

    /// The paddle of `user` in `scope`, assigned now if they have none.
    func assign(_ user: UserID, in scope: String) async throws(APIError) -> Int {
        if let known = cached(user, in: scope) { return known }
        let paddle: Int
        do {
            paddle = try await store.paddle(of: user, in: scope)
        } catch {
            throw APIError.storeUnavailable
        }
        remember([user: paddle], in: scope, loaded: false)
        return paddle
    }

    /// For each scope, the paddles of the bidders named there (users named in a log: every one
    /// gets a paddle) and of `viewer` (only if they have one). One store read covers every scope
    /// with someone not cached; a store that does not answer leaves the users not cached out.
    func paddles(_ named: [String: Set<UserID>], viewer: UserID? = nil) async -> [String: [UserID: Int]] {
        var found: [String: [UserID: Int]] = [:]
        var unknown: [String] = []
        scopes.withLock { scopes in
            for (scope, bidders) in named {
                let entry = scopes[scope]
                let paddles = entry?.paddles ?? [:]
                // Only the users asked for: a sale may hold thousands of paddles.
                var known: [UserID: Int] = [:]
                for user in bidders { known[user] = paddles[user] }
                if let viewer { known[viewer] = paddles[viewer] }
                found[scope] = known
                let fresh = entry?.loadedAt.map { .now - $0 < absenceAge } ?? false
                if bidders.contains(where: { paddles[$0] == nil })
                    || (viewer.map { paddles[$0] == nil } ?? false) && !fresh
                {
                    unknown.append(scope)
                }
            }
        }
        guard !unknown.isEmpty else { return found }
        // A store that does not answer leaves them out now (shown without a paddle), rather than
        // holding up a stream for one more call per bidder.
        guard let loaded = try? await store.paddles(in: unknown) else { return found }
        for scope in unknown {
            let all = loaded[scope] ?? [:]
            remember(all, in: scope, loaded: true)
            for user in (named[scope] ?? []).union(viewer.map { [$0] } ?? []) where all[user] != nil {
                found[scope]?[user] = all[user]
            }
        }
        for scope in unknown {
            for bidder in named[scope] ?? [] where found[scope]?[bidder] == nil {
                found[scope]?[bidder] = try? await assign(bidder, in: scope)
            }
        }
        return found
    }

    /// The paddles in one scope (see the other `paddles`).
    func paddles(of bidders: Set<UserID>, viewer: UserID? = nil, in scope: String) async -> [UserID: Int] {
        await paddles([scope: bidders], viewer: viewer)[scope] ?? [:]
    }

    private func cached(_ user: UserID, in scope: String) -> Int? {
        scopes.withLock { $0[scope]?.paddles[user] }
    }

    private func remember(_ paddles: [UserID: Int], in scope: String, loaded: Bool) {
        scopes.withLock { scopes in
            if scopes[scope] == nil, scopes.count >= capacity, let victim = scopes.keys.first {
                scopes.removeValue(forKey: victim)
            }
            scopes[scope, default: Scope()].paddles.merge(paddles) { _, new in new }
            if loaded { scopes[scope]?.loadedAt = .now }
        }
    }
}
