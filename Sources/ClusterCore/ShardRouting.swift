public import AuctionCore

/// Where a command for a shard runs, as one node sees it — here, forwarded to the shard's owner in
/// this node's view, or refused — and which shard leases the node must give up when its view
/// changes.
///
/// Pure and deterministic (sans-IO): `ClusterNode` drives it with its membership view, its clock and
/// the outcomes of its runs, and the seeded `ClusterSimulation` drives this same type, so the
/// simulation's seeds check the routing and lease rules that production runs, not a copy of them.
///
/// Invariants it keeps:
/// - A node that reaches no majority of the cluster (`holdsShards` false) runs nothing and keeps no
///   lease: the majority owns every shard.
/// - A command travels at most `maximumHops` times between nodes (views that disagree cannot make
///   it circle).
/// - A shard another node took while this node's view said it owned it is not run here again
///   before `fencedHoldOff` has passed or the view changed: one of the two views is behind, and
///   taking the shard straight back would fence the other node, which would take it back in turn.
public struct ShardRouting: Sendable {
    public enum Decision: Hashable, Sendable {
        /// This node owns the shard in its view: run the command on its actor.
        case runHere
        /// Send the command to `owner`, the shard's owner in this node's view.
        case forward(to: NodeID)
        /// Answer a retryable "owner unavailable".
        case refuse(Refusal)
    }

    public enum Refusal: Hashable, Sendable, CustomStringConvertible {
        /// No live member has the `auctions` role.
        case noOwner
        /// This node does not reach a majority of the cluster.
        case noMajority
        /// Another node took the shard recently although this node's view says it is ours.
        case heldOff(ShardID)
        /// The command was forwarded `maximumHops` times already.
        case tooManyHops

        public var description: String {
            switch self {
            case .noOwner: "no live member takes auctions"
            case .noMajority: "this node does not reach a majority of the cluster"
            case .heldOff(let shard): "another node took \(shard); waiting for the view to settle"
            case .tooManyHops: "views of the cluster disagree"
            }
        }
    }

    /// Faults a test plants to show that the seeded simulation catches a bug in this type. Never
    /// set outside such a test.
    public enum PlantedFault: Hashable, Sendable {
        /// Runs commands and keeps leases without a majority.
        case ignoresMajority
    }

    public let me: NodeID
    public let fencedHoldOff: Duration
    public let maximumHops: UInt8 = 2
    /// The members that may own shards, as this node sees them (`Placement.candidates`).
    public private(set) var candidates: [NodeID]
    /// Shards another node took while this node's view said it owned them, and when (on the
    /// caller's monotonic clock); forgotten when the view changes.
    private var fencedAt: [ShardID: Duration] = [:]
    @_spi(Simulation) public var plantedFault: PlantedFault?

    public init(me: NodeID, candidates: [NodeID], fencedHoldOff: Duration) {
        self.me = me
        self.candidates = candidates
        self.fencedHoldOff = fencedHoldOff
    }

    /// The owner of `shard` in this node's view.
    public func owner(of shard: ShardID) -> NodeID? {
        Placement.owner(of: shard, among: candidates)
    }

    /// Whether this node owns `shard` now: placed here, and a majority reached (`holdsShards`:
    /// `MembershipInstance.holdsShards` as of now — it moves with this node's own failed probes
    /// too, not only with the view).
    public func owns(_ shard: ShardID, holdsShards: Bool) -> Bool {
        (holdsShards || plantedFault == .ignoresMajority) && owner(of: shard) == me
    }

    /// Where a command for `shard` that has travelled `hops` times goes. `now` is on the caller's
    /// monotonic clock; `holdsShards` as in `owns`.
    public mutating func route(_ shard: ShardID, hops: UInt8, holdsShards: Bool, now: Duration) -> Decision {
        guard let owner = owner(of: shard) else { return .refuse(.noOwner) }
        guard owner == me else {
            return hops < maximumHops ? .forward(to: owner) : .refuse(.tooManyHops)
        }
        guard holdsShards || plantedFault == .ignoresMajority else { return .refuse(.noMajority) }
        if let fenced = fencedAt[shard] {
            if now - fenced < fencedHoldOff { return .refuse(.heldOff(shard)) }
            fencedAt[shard] = nil
        }
        return .runHere
    }

    /// A run here (or a write under this node's lease) was fenced: another node holds `shard`.
    public mutating func fenced(_ shard: ShardID, now: Duration) {
        fencedAt[shard] = now
    }

    /// A new view of the cluster. A change of placement forgets the fenced shards (the view that
    /// was behind may be this one, and it moved).
    public mutating func viewChanged(candidates: [NodeID]) {
        if candidates != self.candidates { fencedAt = [:] }
        self.candidates = candidates
    }

    /// Of the shards this node holds leases on, those it must give up in the current view: placed
    /// elsewhere, or all of them without a majority.
    public func shardsToRelease(among held: some Sequence<ShardID>, holdsShards: Bool) -> [ShardID] {
        held.filter { !owns($0, holdsShards: holdsShards) }
    }

    /// How many of `shardMap`'s shards are placed on this node in its view.
    public func shardsPlacedHere(of shardMap: ShardMap) -> Int {
        (0..<shardMap.shardCount).filter { owner(of: ShardID($0)) == me }.count
    }
}
