public import AuctionCore

/// The durable truth of the engine: per-auction ordered event logs, snapshots, and the shard
/// ownership leases that fence them. PostgreSQL and SQLite implement it and pass one conformance
/// suite.
///
/// Invariants every implementation keeps:
/// - `acquire` bumps a shard's epoch atomically; epochs of a shard only grow.
/// - `append` writes a whole batch or nothing. Each entry is conditional on its shard's current
///   epoch being exactly the writer's (fencing) and on `firstSeq` being the auction's next sequence
///   number (no gap, no duplicate). Concurrent `acquire`s and `append`s serialise so that once an
///   `acquire` has returned epoch e+1, no append with epoch e can commit.
/// - Reads return events in `seq` order, starting right after the requested seq, with no gap.
public protocol EventStore: Sendable {
    /// Creates or upgrades the schema; safe to call from several nodes at once and more than once.
    func migrate() async throws(StorageError)

    /// Takes ownership of `shard` for `node`: its epoch becomes the previous one plus one (1 for a
    /// shard never owned). The returned epoch fences every earlier owner.
    func acquire(shard: ShardID, node: NodeID) async throws(StorageError) -> ShardLease

    /// The current lease of `shard`, nil when no node ever took it.
    func lease(of shard: ShardID) async throws(StorageError) -> ShardLease?

    /// Appends every entry of `batch` in one transaction, or nothing (see the invariants above).
    func append(_ batch: AppendBatch) async throws(StorageError)

    /// The latest snapshot of `auction` and every event after it; empty when the auction has no log.
    func load(_ auction: AuctionID) async throws(StorageError) -> StoredAuction

    /// Up to `limit` events of `auction` with `seq > afterSeq`, in order. Throws `compacted` when
    /// events after `afterSeq` were compacted away (`ArchiveStore.compact`).
    func events(of auction: AuctionID, after afterSeq: Int64, limit: Int) async throws(StorageError) -> [StoredEvent]

    /// The logs of `auctions` from their first event through `maxSeq` — each log's events together,
    /// in seq order; the logs in no order the caller may rely on — in one read: a starting reader loads a page of logs at the cost of their events, not of
    /// a round trip per log. A compacted log (whose first event is past seq 1) may be missing or
    /// start past seq 1 here; read it with ``events(of:after:limit:)``, which says it was compacted.
    func logs(of auctions: [AuctionID], through maxSeq: Int64) async throws(StorageError) -> [StoredEvent]

    /// The heads of the logs that grew after `cursor` (``LogCursor/start``: every log), at most
    /// `limit`, in the order their appends committed, with the cursor to ask from next.
    ///
    /// This is how a reader that may have missed pushes (a node that joined late, was partitioned, or
    /// lost a connection) catches up at the cost of what changed, not of what exists. A log appears
    /// at most once per page, with the seq it ends at. Invariant: following the cursor never skips
    /// an append — one that commits after a page was read has a position after that page's cursor
    /// (in PostgreSQL a head is listed only once no transaction older than it is still running).
    func logHeads(after cursor: LogCursor, limit: Int) async throws(StorageError) -> LogHeadsPage

    /// Up to `limit` events of every auction after `cursor` (``FeedCursor/start``: from the first),
    /// in one cluster-wide order a consumer outside the cluster follows, with the cursor to ask from
    /// next.
    ///
    /// Invariant: following the cursors skips no committed event and repeats none. Each auction's
    /// events come in `seq` order. PostgreSQL lists an event only once every transaction that
    /// started before its own has ended, so a page never runs ahead of a commit still to come.
    /// Throws `unknownFeedCursor` for a cursor past anything this store issued.
    func feed(after cursor: FeedCursor, limit: Int) async throws(StorageError) -> FeedPage
}

extension EventStore {
    /// One log after another: right for a store in the process (no round trip to save).
    public func logs(of auctions: [AuctionID], through maxSeq: Int64) async throws(StorageError) -> [StoredEvent] {
        var found: [StoredEvent] = []
        for auction in auctions {
            do {
                found += try await events(of: auction, after: 0, limit: Int(clamping: maxSeq))
            } catch .compacted {
                continue
            }
        }
        return found
    }
}

/// Where a reader of ``EventStore/logHeads(after:limit:)`` stands: the commit position of the last
/// head it read. Opaque to callers; only the store that returned it compares it.
public struct LogCursor: Hashable, Sendable, Comparable {
    /// PostgreSQL: the appending transaction's id; SQLite: 0 (one writer commits in order).
    public var transaction: UInt64
    /// The append's number, unique and increasing within one transaction.
    public var change: Int64

    public init(transaction: UInt64, change: Int64) {
        self.transaction = transaction
        self.change = change
    }

    /// Before every append.
    public static let start = LogCursor(transaction: 0, change: 0)

    public static func < (a: Self, b: Self) -> Bool { (a.transaction, a.change) < (b.transaction, b.change) }
}

/// A place in the commit-ordered feed: after which event a consumer stands. Its text form (two
/// numbers and a dot) is what the API hands out and takes back; only the store that issued it
/// gives it meaning.
public struct FeedCursor: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// PostgreSQL: the id of the transaction that appended the event; SQLite: 0.
    public var transaction: UInt64
    /// The event's number from the store's sequence, increasing within one transaction.
    public var position: Int64

    public init(transaction: UInt64, position: Int64) {
        self.transaction = transaction
        self.position = position
    }

    /// Before every event.
    public static let start = FeedCursor(transaction: 0, position: 0)

    /// Parses the text form; nil for anything else (no sign, no spaces, no leading zeros).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy(Self.isCanonicalNumber),
            let transaction = UInt64(parts[0]), let position = Int64(parts[1])
        else { return nil }
        self.init(transaction: transaction, position: position)
    }

    private static func isCanonicalNumber(_ part: Substring) -> Bool {
        !part.isEmpty && part.count <= 20 && part.allSatisfy { $0.isASCII && $0.isNumber }
            && (part == "0" || part.first != "0")
    }

    public var description: String { "\(transaction).\(position)" }

    public static func < (a: Self, b: Self) -> Bool { (a.transaction, a.position) < (b.transaction, b.position) }
}

/// One event of the feed, with the cursor that resumes right after it.
public struct FeedEntry: Sendable, Hashable {
    public var cursor: FeedCursor
    public var event: StoredEvent

    public init(cursor: FeedCursor, event: StoredEvent) {
        self.cursor = cursor
        self.event = event
    }
}

/// One page of the feed, and the cursor after it (the one asked from, when it is empty).
public struct FeedPage: Sendable {
    public var entries: [FeedEntry]
    public var next: FeedCursor

    public init(entries: [FeedEntry], next: FeedCursor) {
        self.entries = entries
        self.next = next
    }
}

/// Where one auction's log ends.
public struct LogHead: Hashable, Sendable {
    public var auction: AuctionID
    public var lastSeq: Int64

    public init(auction: AuctionID, lastSeq: Int64) {
        self.auction = auction
        self.lastSeq = lastSeq
    }
}

/// One page of changed log heads, and the cursor after it (the one asked from, when it is empty).
public struct LogHeadsPage: Sendable {
    public var heads: [LogHead]
    public var next: LogCursor

    public init(heads: [LogHead], next: LogCursor) {
        self.heads = heads
        self.next = next
    }
}

/// Whether `append` refuses writers with a stale epoch. Always `enforced` in service: with it off,
/// a node that lost its shard (paused, partitioned) can still write, and two writers interleave in
/// one log. The switch exists only so the chaos checker can be shown catching exactly that.
public enum Fencing: Sendable, Hashable {
    case enforced
    /// Debug only: appends skip the epoch check (events still record the writer's epoch).
    case unsafelyDisabled
}

/// Who may write a shard, and with which fencing epoch.
public struct ShardLease: Hashable, Sendable {
    public var shard: ShardID
    public var epoch: Epoch
    public var owner: NodeID

    public init(shard: ShardID, epoch: Epoch, owner: NodeID) {
        self.shard = shard
        self.epoch = epoch
        self.owner = owner
    }
}

/// Events decided together, possibly for many auctions (group commit), written atomically.
public struct AppendBatch: Sendable {
    public var entries: [AppendEntry]

    public init(entries: [AppendEntry]) {
        self.entries = entries
    }
}

/// The next events of one auction, written under `epoch` of `shard`.
public struct AppendEntry: Sendable {
    public var auction: AuctionID
    public var shard: ShardID
    public var epoch: Epoch
    /// The seq of the first event; the auction's log must end at `firstSeq - 1`.
    public var firstSeq: Int64
    public var events: [AuctionEvent]
    /// The auction as of the last event of this entry, stored as its latest snapshot.
    public var snapshot: Auction?

    public init(
        auction: AuctionID, shard: ShardID, epoch: Epoch, firstSeq: Int64, events: [AuctionEvent],
        snapshot: Auction? = nil
    ) {
        self.auction = auction
        self.shard = shard
        self.epoch = epoch
        self.firstSeq = firstSeq
        self.events = events
        self.snapshot = snapshot
    }

    public var lastSeq: Int64 { firstSeq + Int64(events.count) - 1 }
}

/// What the store holds of one auction: its latest snapshot and the events after it.
public struct StoredAuction: Sendable {
    public var snapshot: Auction?
    public var tail: [StoredEvent]

    public init(snapshot: Auction?, tail: [StoredEvent]) {
        self.snapshot = snapshot
        self.tail = tail
    }

    /// The live auction these add up to.
    public func restore(_ id: AuctionID) throws(StorageError) -> Auction {
        var auction = snapshot ?? Auction(id: id)
        for stored in tail {
            guard stored.seq == auction.seq + 1 else {
                throw .corruptRecord(auction: id, seq: stored.seq, reason: "expected seq \(auction.seq + 1)")
            }
            do {
                try auction.apply(stored.event)
            } catch {
                throw .corruptRecord(auction: id, seq: stored.seq, reason: error.reason)
            }
        }
        return auction
    }
}
