/// Why a command got no acceptance from the engine.
///
/// Only `rejected` is an answer about the auction; the others say the command's outcome could not
/// be established here and now, and that retrying with the same bid id is safe (invariant 5).
public enum EngineError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The auction rules refused the command; nothing was recorded.
    case rejected(AuctionRejection)
    /// This node does not own the auction's shard (any more): send the command to the owner.
    case notOwner(ShardID)
    /// The store failed; the command may or may not be recorded. Retry with the same bid id.
    case storeUnavailable(String)
    /// The auction's actor stopped (passivated or shutting down) while the command waited.
    case stopped
    /// No node could be reached that owns the auction's shard (views disagree, or the owner is
    /// failing over). Retry shortly with the same bid id.
    case ownerUnavailable(String)
    /// The auction's owner refused a forwarded command: whoever it was run for may not do it (no
    /// such user, a revoked token, a missing role, a bid in someone else's name), whatever the
    /// forwarding node vouched. Nothing was recorded. `code` is the API's (`forbidden`,
    /// `token_revoked`, `bidding_blocked`, `not_your_command`).
    case refusedByOwner(code: String, detail: String)

    /// A stable machine-readable code.
    public var code: String {
        switch self {
        case .rejected(let rejection): rejection.code
        case .notOwner: "not_owner"
        case .storeUnavailable: "store_unavailable"
        case .stopped: "stopped"
        case .ownerUnavailable: "owner_unavailable"
        case .refusedByOwner(let code, _): code
        }
    }

    public var description: String {
        switch self {
        case .rejected(let rejection): rejection.message
        case .notOwner(let shard): "This node does not own \(shard)."
        case .storeUnavailable(let detail): "The store is unavailable (\(detail)); retry with the same bid id."
        case .stopped: "The auction was stopped on this node; retry."
        case .ownerUnavailable(let detail): "The auction's owner is unavailable (\(detail)); retry shortly."
        case .refusedByOwner(_, let detail): detail
        }
    }
}

/// Whom a command is run for, as the node that took it from outside vouches: a user of the API
/// (with the token version the gateway verified), or a node's own background work (closes and
/// settlement steps). Travels with a forwarded command so that the owner checks it again instead of
/// trusting the forwarding node with more than a node may do.
public enum CommandIssuer: Hashable, Sendable {
    case user(UserID, tokenVersion: Int64)
    case node
}

/// A command the engine accepted, durably: its events (if any) are in the log.
public struct CommandAccepted: Hashable, Sendable {
    /// The auction's seq after the command (for a replayed bid: the seq the answer was read at).
    public var seq: Int64
    /// The receipt of a bid or purchase.
    public var receipt: BidReceipt?
    /// The public view of the auction right after the command.
    public var summary: AuctionSummary
    /// True when the command was accepted before (the same bid id, or a create with the same terms)
    /// and nothing new was recorded.
    public var replayed: Bool

    public init(seq: Int64, receipt: BidReceipt?, summary: AuctionSummary, replayed: Bool) {
        self.seq = seq
        self.receipt = receipt
        self.summary = summary
        self.replayed = replayed
    }
}
