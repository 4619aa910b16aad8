/// Timings and bounds of the membership protocol.
///
/// The defaults target a LAN or loopback cluster: a crashed node is suspected within about two probe
/// periods, and — once a second node confirms the suspicion — declared dead `suspicionMinimum`
/// later (≈ 1.5 s end to end). A lone suspicion waits `suspicionMaximum`, which
/// gives a slow but live node time to refute (Lifeguard's shrinking suspicion timeout).
public struct MembershipSettings: Hashable, Sendable {
    /// How often a node probes one other member.
    public var probeInterval: Duration = .milliseconds(300)
    /// How long a direct ping may take before indirect probes are sent.
    public var pingTimeout: Duration = .milliseconds(120)
    /// How many members are asked to probe indirectly.
    public var indirectProbes: Int = 3
    /// Suspicion timeout once enough independent suspicions arrived.
    public var suspicionMinimum: Duration = .milliseconds(1_000)
    /// Suspicion timeout of a lone suspicion.
    public var suspicionMaximum: Duration = .milliseconds(3_000)
    /// Most independent suspicions that still shorten the timeout (Lifeguard's K).
    public var suspicionConfirmations: Int = 3
    /// Membership changes piggybacked on one message.
    public var gossipPerMessage: Int = 8
    /// A change is gossiped `multiplier × ⌈log2(n + 1)⌉` times.
    public var gossipRetransmitMultiplier: Int = 3
    /// How often a node pushes its whole view to a random member (and pulls theirs), which heals
    /// partitions. Seeds that have not answered yet are asked every probe interval instead.
    public var syncInterval: Duration = .seconds(5)
    /// The highest local health multiplier (Lifeguard's S): a starved node probes at most
    /// `1 + maximumLocalHealth` times slower than `probeInterval`.
    public var maximumLocalHealth: Int = 8
    /// The most members one view holds; records beyond it are ignored.
    public var maximumMembers: Int = 256

    public init() {}
}
