public import AuctionCore

/// Why the store refused or failed an operation.
///
/// `fenced` and `seqConflict` are decisions: nothing was written, and the writer must step down
/// (fenced) or reload (conflict). `unavailable` is a failure of the database or the connection:
/// for a write, its outcome is unknown until the log is read again.
public enum StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The shards' epochs moved past the writer's: another node owns them now.
    case fenced([FencedShard])
    /// The auction's log does not end where the writer expected (`actualLastSeq` is nil when a
    /// concurrent writer raced to the same seq and the end is not known).
    case seqConflict(auction: AuctionID, expectedLastSeq: Int64, actualLastSeq: Int64?)
    /// A stored row cannot be decoded or does not follow its predecessor.
    case corruptRecord(auction: AuctionID, seq: Int64, reason: String)
    /// The batch itself is malformed (empty entry, two entries for one auction, a seq below 1).
    case invalidBatch(String)
    /// The database could not be reached or failed; `detail` is safe to log (no secrets).
    case unavailable(String)
    /// A feed cursor this store never issued: past its last event (another database's, or made
    /// up). Following it would wait for ever instead of saying so.
    case unknownFeedCursor(FeedCursor)
    /// A feed cursor from before the feed's horizon: events after it were compacted away with the
    /// live logs of archived lots (their records are in the archive). Resuming from it would skip
    /// them silently; a consumer starts again from `start` (the oldest event kept) or `horizon`.
    case feedCursorExpired(FeedCursor, horizon: FeedCursor)
    /// The events asked for were compacted: the lot is archived (its record holds the history) and
    /// its live log starts at `keptFrom`, the seq of its snapshot (`load` gives the whole lot).
    case compacted(auction: AuctionID, keptFrom: Int64)

    public struct FencedShard: Hashable, Sendable {
        public var shard: ShardID
        public var writerEpoch: Epoch
        /// The epoch in the store; nil when the shard was never acquired.
        public var currentEpoch: Epoch?

        public init(shard: ShardID, writerEpoch: Epoch, currentEpoch: Epoch?) {
            self.shard = shard
            self.writerEpoch = writerEpoch
            self.currentEpoch = currentEpoch
        }
    }

    /// A stable machine-readable code.
    public var code: String {
        switch self {
        case .fenced: "fenced"
        case .seqConflict: "seq_conflict"
        case .corruptRecord: "corrupt_record"
        case .invalidBatch: "invalid_batch"
        case .unavailable: "store_unavailable"
        case .unknownFeedCursor: "unknown_cursor"
        case .feedCursorExpired: "feed_cursor_expired"
        case .compacted: "log_compacted"
        }
    }

    public var description: String {
        switch self {
        case .fenced(let shards):
            let list = shards.map {
                "\($0.shard) (writer \($0.writerEpoch), store \($0.currentEpoch?.description ?? "none"))"
            }
            return "fenced: \(list.joined(separator: ", "))"
        case .seqConflict(let auction, let expected, let actual):
            return
                "seq conflict on auction \(auction): expected the log to end at \(expected), it ends at \(actual.map(String.init) ?? "another seq")"
        case .corruptRecord(let auction, let seq, let reason):
            return "corrupt record \(seq) of auction \(auction): \(reason)"
        case .invalidBatch(let reason):
            return "invalid batch: \(reason)"
        case .unavailable(let detail):
            return "store unavailable: \(detail)"
        case .unknownFeedCursor(let cursor):
            return "feed cursor \(cursor) was not issued by this store"
        case .feedCursorExpired(let cursor, let horizon):
            return "feed cursor \(cursor) is before the feed's horizon \(horizon): events after it were compacted"
        case .compacted(let auction, let keptFrom):
            return "the log of auction \(auction) was compacted: it starts at seq \(keptFrom); the history is archived"
        }
    }
}

extension AppendBatch {
    /// Checks the shape of the batch before any I/O.
    func validate() throws(StorageError) {
        var seen = Set<AuctionID>()
        for entry in entries {
            guard !entry.events.isEmpty else { throw .invalidBatch("entry for \(entry.auction) has no events") }
            guard entry.firstSeq >= 1 else { throw .invalidBatch("seq must start at 1") }
            guard seen.insert(entry.auction).inserted else {
                throw .invalidBatch("two entries for auction \(entry.auction)")
            }
            if let snapshot = entry.snapshot, snapshot.seq != entry.lastSeq || snapshot.id != entry.auction {
                throw .invalidBatch("snapshot of \(entry.auction) is not at seq \(entry.lastSeq)")
            }
        }
    }
}
