public import AuctionCore

/// The end of every auction reaches each of its bidders: for every `closed` or `cancelled` event
/// in the final logs, each bidder who bid on the auction must have received the notification it
/// causes (`won`, `lost`, `cancelled`) through their live stream, on whatever node they were
/// connected to — also when that node was cut off when the auction ended. A closed auction has no
/// later event to reveal a gap, so this is checked, not assumed.
///
/// Pure: the logs and the notification ids each bidder received in; what is missing out.
public enum NotificationCheck {
    /// The ids (`auction:seq:kind`, as `BidderNotification.id`) of the end notifications the logs
    /// imply for `users`, each derived with the auction rules the nodes use.
    public static func expectedEndNotifications(
        logs: [AuctionID: [StoredEvent]], for users: Set<UserID>
    ) -> [UserID: Set<String>] {
        var expected: [UserID: Set<String>] = [:]
        for (auction, log) in logs {
            var state: AuctionState?
            var bidders: Set<UserID> = []
            var leader: UserID?
            for event in log.sorted(by: { $0.seq < $1.seq }) {
                guard (try? AuctionState.advance(&state, with: event.event, auction: auction, seq: event.seq)) != nil,
                    let current = state
                else { break }
                switch event.event {
                case .bidAccepted(let bid): bidders.insert(bid.bidderId)
                case .boughtNow(let purchase): bidders.insert(purchase.bidderId)
                case .created, .extended, .closed, .cancelled, .settlement: break
                }
                switch event.event {
                case .closed, .cancelled:
                    for note in current.notifications(
                        auction: auction, seq: event.seq, after: event.event, previousLeader: leader,
                        bidders: bidders)
                    where users.contains(note.userId) {
                        expected[note.userId, default: []].insert(note.id)
                    }
                default: break
                }
                leader = current.leader?.bidderId
            }
        }
        return expected
    }

    /// One line per notification a bidder should have received and did not.
    public static func missing(expected: [UserID: Set<String>], received: [UserID: Set<String>]) -> [String] {
        expected.sorted { $0.key.rawValue < $1.key.rawValue }.flatMap { user, ids in
            ids.subtracting(received[user] ?? []).sorted().map { "\(user.rawValue) never got \($0)" }
        }
    }
}
