/// When a node's periodic work falls due: renewing its subscriptions, catching its read model up,
/// closing due auctions, passivating idle ones.
///
/// Pure and deterministic (sans-IO): the node asks ``due(at:)`` for what to do now and sleeps until
/// ``nextDeadline`` (or the membership's deadline, whichever is first) instead of waking every few
/// milliseconds to look; a view change makes the work that depends on the view due at once
/// (``viewChanged(at:)``). Times are durations on the node's monotonic clock since it started.
///
/// Invariant: every chore runs at most once per its interval from ``due(at:)`` and at least once
/// per interval as long as the node asks at its deadline.
public struct NodeChores: Sendable {
    public enum Chore: Hashable, Sendable, CaseIterable {
        /// Subscribe again to every live member's events and let live feeds look in the store for a
        /// push they missed: a subscription a restarted member lost comes back within the interval.
        case renewSubscriptions
        /// Read the store's log heads for what pushes missed (`AuctionReadModel.catchUp`).
        case catchUpReadModel
        /// Load the owned auctions ending soon (their actors arm the close timer) and close those
        /// past their end that still run.
        case closeDueAuctions
        /// Stop the actors of auctions nobody used for a while.
        case passivateIdleAuctions
    }

    public struct Intervals: Hashable, Sendable {
        public var renewSubscriptions: Duration
        public var catchUpReadModel: Duration
        public var closeDueAuctions: Duration
        public var passivateIdleAuctions: Duration

        public init(
            renewSubscriptions: Duration = .seconds(2), catchUpReadModel: Duration = .seconds(2),
            closeDueAuctions: Duration = .seconds(2), passivateIdleAuctions: Duration = .seconds(15)
        ) {
            self.renewSubscriptions = renewSubscriptions
            self.catchUpReadModel = catchUpReadModel
            self.closeDueAuctions = closeDueAuctions
            self.passivateIdleAuctions = passivateIdleAuctions
        }

        public func interval(of chore: Chore) -> Duration {
            switch chore {
            case .renewSubscriptions: renewSubscriptions
            case .catchUpReadModel: catchUpReadModel
            case .closeDueAuctions: closeDueAuctions
            case .passivateIdleAuctions: passivateIdleAuctions
            }
        }
    }

    public let intervals: Intervals
    private var next: [Chore: Duration]

    /// Every chore falls due one interval after `start` (a starting node subscribes and catches up
    /// on its own first).
    public init(intervals: Intervals = Intervals(), start: Duration = .zero) {
        self.intervals = intervals
        next = Dictionary(uniqueKeysWithValues: Chore.allCases.map { ($0, start + intervals.interval(of: $0)) })
    }

    /// The earliest time a chore falls due.
    public var nextDeadline: Duration { next.values.min() ?? .zero }

    /// The chores due at `now`, in a fixed order; each is due again one interval later.
    public mutating func due(at now: Duration) -> [Chore] {
        var due: [Chore] = []
        for chore in Chore.allCases where next[chore, default: .zero] <= now {
            due.append(chore)
            next[chore] = now + intervals.interval(of: chore)
        }
        return due
    }

    /// The view changed at `now`: the subscriptions (a member may be new) and the due closes (the
    /// node may own more shards) are due at once; the rest keep their time.
    public mutating func viewChanged(at now: Duration) -> [Chore] {
        next[.renewSubscriptions] = now
        next[.closeDueAuctions] = now
        return due(at: now)
    }
}
