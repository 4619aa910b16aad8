/// What membership instances say to each other. Every message carries the sender's own record
/// (so hearing from a node is how one learns of it) and a bounded piece of gossip.
public struct MembershipMessage: Hashable, Sendable {
    public var sender: Member
    public var kind: Kind
    /// Recent membership changes, piggybacked: at most `MembershipSettings.gossipPerMessage`.
    public var gossip: [Member]

    public init(sender: Member, kind: Kind, gossip: [Member] = []) {
        self.sender = sender
        self.kind = kind
        self.gossip = gossip
    }

    public enum Kind: Hashable, Sendable {
        /// Are you alive? Answered with `ack` of the same sequence number.
        case ping(sequence: UInt64)
        case ack(sequence: UInt64)
        /// Please ping `target` for me and relay its `ack` (SWIM's indirect probe).
        case pingRequest(sequence: UInt64, target: Member)
        /// Push-pull: the sender's whole view; answered with `syncReply`. Also how a node joins.
        case sync([Member])
        case syncReply([Member])
        /// The sender refutes a suspicion or announces a new generation (its record says so).
        case alive
        /// The sender leaves the cluster (its record says `left`).
        case leave
    }
}

/// What a membership instance asks its shell to do.
public enum MembershipDirective: Hashable, Sendable {
    case send(MembershipMessage, to: NodeAddress)
    /// A member's record changed (joined, suspected, refuted, died, left, restarted).
    case changed(from: Member?, to: Member)
}
