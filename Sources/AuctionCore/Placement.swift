/// A shard: the unit of ownership. Auctions hash into a fixed number of shards that never changes
/// at run time, so the shard of an auction is a pure function of its id, and ownership (leases,
/// fencing epochs, placement on nodes) is tracked per shard instead of per auction.
public struct ShardID: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    public static func < (lhs: ShardID, rhs: ShardID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "shard-\(rawValue)" }
}

/// Maps auctions to shards with a stable hash (64-bit FNV-1a of the id's UTF-8 bytes, modulo the
/// shard count).
///
/// Invariant: the same id always maps to the same shard for a given `shardCount`, on every node and
/// every platform (no `Hasher`, whose seed changes per process).
public struct ShardMap: Hashable, Sendable {
    public static let defaultShardCount: Int32 = 1_024
    public let shardCount: Int32

    public init(shardCount: Int32 = ShardMap.defaultShardCount) {
        precondition(shardCount > 0, "a shard map needs at least one shard")
        self.shardCount = shardCount
    }

    public func shard(of auctionId: AuctionID) -> ShardID {
        shard(ofKey: auctionId.rawValue)
    }

    /// The shard of anything else placed like auctions (a webhook endpoint: `webhook/<id>`).
    public func shard(ofKey key: String) -> ShardID {
        ShardID(Int32(StableHash.fnv1a64(key) % UInt64(shardCount)))
    }
}

/// Hashes that are the same on every node, process and platform (unlike `Hasher`, which is seeded
/// per process): what placement decisions shared by a cluster must use.
public enum StableHash {
    /// 64-bit FNV-1a of the UTF-8 bytes of `text`.
    public static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// SplitMix64's finaliser: spreads the bits of `value` over the whole word.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The fencing token of a shard's ownership. Taking a shard bumps its epoch in the store; every
/// append carries the writer's epoch and fails when the store holds a newer one, so a stale owner
/// can never write (as Kafka's leader epochs).
public struct Epoch: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: Int64

    public init(_ rawValue: Int64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: Epoch, rhs: Epoch) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "epoch-\(rawValue)" }
}

public enum NodeKind: IdentifierKind {}
/// A cluster node, as named in its configuration.
public typealias NodeID = Identifier<NodeKind>
