/// The shard leases one node holds, and the rules by which they come and go: taken on first use,
/// kept while they are the newest, dropped when the store fences a write under them or the log
/// shows a newer writer.
///
/// Pure and deterministic (sans-IO): `AuctionRegistry` keeps one and carries out what it says
/// (stopping the actors of a shard that went), and the seeded `ClusterSimulation` drives this same
/// type, so the seeds check the lease rules production runs.
///
/// Invariants it keeps:
/// - At most one lease per shard, and an acquisition never replaces one already held (two racing
///   acquisitions keep the first).
/// - Work loaded under an epoch serves only while that epoch is the lease held (``mayServe(_:under:)``):
///   state read under a lease lost meanwhile would answer stale and be fenced for ever.
/// - A fence or a newer epoch seen in the log drops the lease only if it is still the one concerned,
///   never a newer lease taken since.
public struct ShardLeases: Sendable, Equatable {
    public private(set) var held: [ShardID: Epoch] = [:]

    public init() {}

    /// The epoch of the lease on `shard`, nil when none is held.
    public func epoch(of shard: ShardID) -> Epoch? { held[shard] }

    /// The store granted `epoch` on `shard`: the lease held now, and whether it is that new one (an
    /// acquisition that raced another keeps the lease taken first).
    public mutating func acquired(_ shard: ShardID, epoch: Epoch) -> (epoch: Epoch, isNew: Bool) {
        if let current = held[shard] { return (current, false) }
        held[shard] = epoch
        return (epoch, true)
    }

    /// Whether work loaded under `epoch` of `shard` may serve: only under the lease held now.
    public func mayServe(_ shard: ShardID, under epoch: Epoch) -> Bool { held[shard] == epoch }

    /// A write under `epoch` of `shard` was fenced (another node took the shard): the lease goes if
    /// it is still that one. Whether it went.
    @discardableResult
    public mutating func fenced(_ shard: ShardID, under epoch: Epoch) -> Bool {
        guard held[shard] == epoch else { return false }
        held[shard] = nil
        return true
    }

    /// The shards whose lease is older than an epoch some log was written under (`seen`): another
    /// node took them while this one did not notice.
    public func overtaken(by seen: some Sequence<(ShardID, Epoch)>) -> Set<ShardID> {
        var stale: Set<ShardID> = []
        for (shard, epoch) in seen {
            if let lease = held[shard], lease < epoch { stale.insert(shard) }
        }
        return stale
    }

    /// Gives up the lease on `shard` (its placement moved, or it was overtaken); the epoch it had.
    @discardableResult
    public mutating func release(_ shard: ShardID) -> Epoch? {
        held.removeValue(forKey: shard)
    }

    /// Gives up every lease (the node stops).
    public mutating func releaseAll() {
        held = [:]
    }
}
