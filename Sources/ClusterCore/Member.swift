public import AuctionCore

/// Where a node listens for cluster traffic.
public struct NodeAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    public static func < (lhs: NodeAddress, rhs: NodeAddress) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}

/// What a node does. Auctions are placed only on members with `auctions`.
public enum NodeRole: String, Hashable, Sendable, CaseIterable, Comparable {
    case gateway
    case auctions
    case payments

    public static func < (lhs: NodeRole, rhs: NodeRole) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The liveness of a member as one node sees it.
public enum MemberStatus: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case alive = 0
    /// Missed a probe; declared dead unless it refutes (higher incarnation) in time.
    case suspect = 1
    /// Final for its generation: the process must come back with a new generation.
    case dead = 2
    /// Left gracefully; final for its generation.
    case left = 3

    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }

    /// Whether the member takes part: it is probed, and owns shards.
    public var isLive: Bool { self == .alive || self == .suspect }
}

/// One node as the membership protocol knows it: identity, address, roles and liveness.
///
/// `generation` identifies one run of the node's process (a restart gets a higher one), and
/// `incarnation` orders the claims about one generation: only the member itself raises it, to
/// refute a suspicion. Between two records of the same id, the higher generation always wins;
/// within a generation, `supersedes` gives SWIM's precedence.
public struct Member: Hashable, Sendable, CustomStringConvertible {
    public var id: NodeID
    public var generation: UInt64
    public var address: NodeAddress
    public var roles: Set<NodeRole>
    public var incarnation: UInt64
    public var status: MemberStatus
    /// For a `suspect` record: the node whose failed probe raised the suspicion. Gossip repeats
    /// claims, so only this tells an independent confirmation (Lifeguard) from an echo.
    public var suspectedBy: NodeID?

    public init(
        id: NodeID, generation: UInt64, address: NodeAddress, roles: Set<NodeRole> = Set(NodeRole.allCases),
        incarnation: UInt64 = 0, status: MemberStatus = .alive, suspectedBy: NodeID? = nil
    ) {
        self.id = id
        self.generation = generation
        self.address = address
        self.roles = roles
        self.incarnation = incarnation
        self.status = status
        self.suspectedBy = status == .suspect ? suspectedBy : nil
    }

    public var description: String {
        "\(id)#\(generation).\(incarnation) \(status)\(suspectedBy.map { " by \($0)" } ?? "") @\(address)"
    }

    /// This record with another status (and, for `suspect`, who suspects).
    public func with(status: MemberStatus, suspectedBy: NodeID? = nil) -> Member {
        Member(
            id: id, generation: generation, address: address, roles: roles, incarnation: incarnation, status: status,
            suspectedBy: suspectedBy)
    }

    /// Whether this record should replace `other` (a record of the same id).
    ///
    /// Newer generation wins; within a generation: `dead` and `left` are final; `left` (said by the
    /// member itself) overrides live records; `dead` and `suspect` override live records of the same
    /// or a lower incarnation — so a death decided on an old suspicion never overrides the member's
    /// refutation; `alive` overrides records of a lower incarnation.
    public func supersedes(_ other: Member) -> Bool {
        if generation != other.generation { return generation > other.generation }
        switch (other.status, status) {
        case (.dead, _), (.left, _): return false
        case (_, .left): return true
        case (.alive, .dead), (.alive, .suspect), (.suspect, .dead): return incarnation >= other.incarnation
        default: return incarnation > other.incarnation
        }
    }
}
