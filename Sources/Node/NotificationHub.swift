public import AuctionCore
import DequeModule
import Synchronization

/// Hands each bidder's notifications to their open streams on this node, and keeps the latest few
/// per bidder so a client that reconnects (here or on another node: every node derives the same
/// notifications) gets what it missed by asking for those since a time and dropping ids it has.
///
/// Invariant: a subscriber sees the retained notifications it asked for, then every later one,
/// each once and in the order the read model applied their events.
public final class NotificationHub: Sendable {
    private struct State {
        var subscribers: [UserID: [Int: AsyncStream<BidderNotification>.Continuation]] = [:]
        var recent: [UserID: Deque<BidderNotification>] = [:]
        var nextToken = 0
    }

    private let state = Mutex(State())
    /// Notifications kept per bidder for reconnects.
    public let retainedPerUser: Int
    /// Notifications buffered for a subscriber that reads slower than they come; the oldest go first.
    public let bufferPerSubscriber: Int

    public init(retainedPerUser: Int = 100, bufferPerSubscriber: Int = 1_000) {
        self.retainedPerUser = retainedPerUser
        self.bufferPerSubscriber = bufferPerSubscriber
    }

    public func publish(_ notifications: [BidderNotification]) {
        guard !notifications.isEmpty else { return }
        state.withLock { state in
            for notification in notifications {
                // In place: copying a bidder's retained notifications per notification was the read
                // model's dearest step under load.
                state.recent[notification.userId, default: []].append(notification)
                if state.recent[notification.userId]!.count > retainedPerUser {
                    state.recent[notification.userId]!.removeFirst()
                }
                for continuation in (state.subscribers[notification.userId] ?? [:]).values {
                    continuation.yield(notification)
                }
            }
        }
    }

    /// Where a subscriber starts: the retained notifications it gets before the live ones.
    public enum Start: Sendable, Hashable {
        /// Only live ones.
        case now
        /// The retained ones at or after a time.
        case since(Timestamp)
        /// The retained ones at or after the time of the notification with this id — the last one a
        /// client saw, perhaps on another node. Every retained one when the id is not (or no longer)
        /// here. The client drops the ids it already has.
        case after(id: String)
    }

    /// `user`'s notifications: the retained ones `start` asks for, then live ones.
    public func subscribe(_ user: UserID, from start: Start) -> AsyncStream<BidderNotification> {
        let (stream, continuation) = AsyncStream<BidderNotification>.makeStream(
            bufferingPolicy: .bufferingNewest(bufferPerSubscriber))
        let token = state.withLock { state in
            let retained = state.recent[user] ?? []
            let since: Timestamp? =
                switch start {
                case .now: nil
                case .since(let time): time
                case .after(let id): retained.first { $0.id == id }?.at ?? Timestamp(millisecondsSinceEpoch: 0)
                }
            if let since {
                for notification in retained where notification.at >= since { continuation.yield(notification) }
            }
            state.nextToken += 1
            state.subscribers[user, default: [:]][state.nextToken] = continuation
            return state.nextToken
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { state in
                state.subscribers[user]?[token] = nil
                if state.subscribers[user]?.isEmpty == true { state.subscribers[user] = nil }
            }
        }
        return stream
    }

    /// Open notification streams on this node.
    public var subscriberCount: Int {
        state.withLock { $0.subscribers.values.reduce(0) { $0 + $1.count } }
    }
}
