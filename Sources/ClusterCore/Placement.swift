public import AuctionCore

/// Which member owns each shard: rendezvous (highest-random-weight) hashing over the live members
/// with the `auctions` role.
///
/// Why rendezvous: every node computes the same owner from the same member set with no shared
/// state, load spreads evenly without virtual nodes, and when a member joins or leaves only the
/// shards it wins or held move (about 1/N of them).
public enum Placement {
    /// The owner of `shard` among `candidates` (already filtered to live `auctions` members), or
    /// nil when there is none. Ties (which need a hash collision) go to the smaller id.
    public static func owner(of shard: ShardID, among candidates: some Sequence<NodeID>) -> NodeID? {
        var best: (weight: UInt64, id: NodeID)?
        for id in candidates {
            let weight = self.weight(shard: shard, node: id)
            if let current = best, current.weight > weight || (current.weight == weight && current.id < id) {
                continue
            }
            best = (weight, id)
        }
        return best?.id
    }

    /// The ids of the members that may own shards: live and with the `auctions` role.
    public static func candidates(_ members: some Sequence<Member>) -> [NodeID] {
        members.filter { $0.status.isLive && $0.roles.contains(.auctions) }.map(\.id).sorted()
    }

    /// The owner of every shard of `shardMap` among `candidates`.
    public static func assignment(shardMap: ShardMap, candidates: [NodeID]) -> [ShardID: NodeID] {
        var result: [ShardID: NodeID] = [:]
        for raw in 0..<shardMap.shardCount {
            let shard = ShardID(raw)
            if let owner = owner(of: shard, among: candidates) { result[shard] = owner }
        }
        return result
    }

    /// A stable 64-bit weight of (shard, node): FNV-1a of the node id, combined with the shard and
    /// mixed so nearby shard numbers get unrelated weights.
    static func weight(shard: ShardID, node: NodeID) -> UInt64 {
        StableHash.mix(
            StableHash.fnv1a64(node.rawValue) ^ (UInt64(UInt32(bitPattern: shard.rawValue)) &* 0x9e37_79b9_7f4a_7c15))
    }
}
