public import AuctionCore

/// One line of a chaos run's history file (JSON Lines): a client request, an event a watcher
/// received, a fault the runner injected, or an auction the workload created. The checker reads
/// these and the final log; nothing else.
public enum HistoryEntry: Codable, Sendable, Hashable {
    case operation(HistoryOperation)
    case watched(WatchedEvent)
    case fault(InjectedFault)
    case auction(WorkloadAuction)

    private enum CodingKeys: String, CodingKey { case type, value }
    private enum Kind: String, Codable { case operation, watched, fault, auction }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(Kind.self, forKey: .type) {
        case .operation: self = .operation(try container.decode(HistoryOperation.self, forKey: .value))
        case .watched: self = .watched(try container.decode(WatchedEvent.self, forKey: .value))
        case .fault: self = .fault(try container.decode(InjectedFault.self, forKey: .value))
        case .auction: self = .auction(try container.decode(WorkloadAuction.self, forKey: .value))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .operation(let value):
            try container.encode(Kind.operation, forKey: .type)
            try container.encode(value, forKey: .value)
        case .watched(let value):
            try container.encode(Kind.watched, forKey: .type)
            try container.encode(value, forKey: .value)
        case .fault(let value):
            try container.encode(Kind.fault, forKey: .type)
            try container.encode(value, forKey: .value)
        case .auction(let value):
            try container.encode(Kind.auction, forKey: .type)
            try container.encode(value, forKey: .value)
        }
    }
}

/// A bid request as the client saw it. Times are microseconds on the client's clock (one clock for
/// the whole run, so "acknowledged before invoked" compares like with like).
public struct HistoryOperation: Codable, Sendable, Hashable {
    public enum Outcome: String, Codable, Sendable, Hashable {
        /// Accepted (new or replayed), with the seq of the bid.
        case ok
        /// Refused for good by the auction rules (a 4xx with a rule code).
        case rejected
        /// Known not to have happened (refused before reaching the auction, e.g. 503 not_owner).
        case failed
        /// No answer (timeout, connection lost): it may or may not have happened.
        case unknown
    }

    public var client: Int
    public var node: String
    public var auction: AuctionID
    public var bidId: BidID
    public var bidder: UserID
    public var maximum: Int64
    public var invokedAt: Int64
    public var completedAt: Int64
    public var outcome: Outcome
    /// The rejection or error code, when there is one.
    public var code: String?
    /// The bid's seq in the auction's log, for `ok`.
    public var seq: Int64?
    /// The auction as the answer showed it, for `ok`.
    public var shown: ShownState?

    public init(
        client: Int, node: String, auction: AuctionID, bidId: BidID, bidder: UserID, maximum: Int64, invokedAt: Int64,
        completedAt: Int64, outcome: Outcome, code: String? = nil, seq: Int64? = nil, shown: ShownState? = nil
    ) {
        self.client = client
        self.node = node
        self.auction = auction
        self.bidId = bidId
        self.bidder = bidder
        self.maximum = maximum
        self.invokedAt = invokedAt
        self.completedAt = completedAt
        self.outcome = outcome
        self.code = code
        self.seq = seq
        self.shown = shown
    }
}

/// The visible state of an auction in an answer: what a client was told. It must be the state of
/// the final log at `seq` (or a state the log passed through).
public struct ShownState: Codable, Sendable, Hashable {
    /// Who led, as the answered bidder can tell: the API shows other bidders only by paddle.
    public enum Leader: String, Codable, Sendable, Hashable {
        case nobody
        case requester
        case another
    }

    public var seq: Int64
    public var price: Int64
    public var leader: Leader
    public var bidCount: Int

    public init(seq: Int64, price: Int64, leader: Leader, bidCount: Int) {
        self.seq = seq
        self.price = price
        self.leader = leader
        self.bidCount = bidCount
    }

    /// The state with `leaderId` leading, as `requester` sees it.
    public init(seq: Int64, price: Int64, leaderId: UserID?, bidCount: Int, shownTo requester: UserID) {
        let leader: Leader = leaderId == nil ? .nobody : leaderId == requester ? .requester : .another
        self.init(seq: seq, price: price, leader: leader, bidCount: bidCount)
    }
}

/// One event a live watcher received, in the order received.
public struct WatchedEvent: Codable, Sendable, Hashable {
    public var watcher: Int
    public var auction: AuctionID
    public var seq: Int64
    /// The event type as streamed (`bid`, `closed`, …).
    public var type: String
    public var bidId: BidID?
    public var node: String
    public var at: Int64

    public init(watcher: Int, auction: AuctionID, seq: Int64, type: String, bidId: BidID?, node: String, at: Int64) {
        self.watcher = watcher
        self.auction = auction
        self.seq = seq
        self.type = type
        self.bidId = bidId
        self.node = node
        self.at = at
    }
}

/// A fault the runner injected (or healed), for the summary and for reading a failure.
public struct InjectedFault: Codable, Sendable, Hashable {
    public var at: Int64
    public var kind: String
    public var target: String

    public init(at: Int64, kind: String, target: String) {
        self.at = at
        self.kind = kind
        self.target = target
    }
}

/// An auction the workload created: the checker looks at exactly these.
public struct WorkloadAuction: Codable, Sendable, Hashable {
    public var auction: AuctionID
    public var at: Int64

    public init(auction: AuctionID, at: Int64) {
        self.auction = auction
        self.at = at
    }
}
