import DequeModule

/// The auction's record of the bids it accepted, for answering a resubmitted bid id with its
/// original receipt (invariant 5) — in memory that does not grow by hundreds of bytes per bid.
///
/// Why two tiers: retries come seconds after the first attempt, but an auction can take a hundred
/// thousand bids. The receipts of recent bids (`retention` of event time, and at least
/// `minimumRetained` of them) are kept whole; of older bids only an 8-byte fingerprint of the bid
/// id stays. A bid id whose fingerprint matches may be a late retry: its receipt is then read back
/// from the log (`lookup` says `.inLog`), so answers stay exact at any age; a fingerprint never
/// makes a new bid look old without that check.
///
/// Invariants: fingerprints are never removed (two old ids may share one; dropping it for one
/// would make the other look new), so a receipt restored from the log may be in both tiers and
/// the whole one answers; `order` lists the ids of `recent` oldest first, restored ones at the end,
/// and holds nothing else (an id leaves it when its receipt turns into a fingerprint, so an id's
/// string is not kept alive past its receipt).
public struct BidLedger: Sendable {
    /// How long, in event time, a receipt stays whole after the newest receipt of its auction.
    public static let retention: Duration = .seconds(120)
    /// Receipts kept whole however old they are: a lot's last few bids answer a retry without a
    /// log read. Few, because this is memory per open lot that bids stopped coming to (every older
    /// receipt is in the log and answers through its fingerprint).
    public static let minimumRetained = 32

    private var recent: [BidID: BidReceipt] = [:]
    /// The bid ids of `recent`, oldest first.
    private var order: Deque<BidID> = []
    private var older: Set<UInt64> = []

    /// What the ledger knows of a bid id.
    public enum Lookup: Hashable, Sendable {
        case receipt(BidReceipt)
        /// An older bid may have had this id: its receipt, if any, is in the log.
        case inLog
        case unknown
    }

    public init() {}

    /// A ledger of `receipts` (as a snapshot of an earlier version held them all, or a log replay
    /// found them), trimmed like one that recorded them in seq order.
    public init(receipts: some Sequence<BidReceipt>, olderFingerprints: some Sequence<UInt64> = []) {
        older = Set(olderFingerprints)
        for receipt in receipts.sorted(by: { $0.seq < $1.seq }) { record(receipt) }
    }

    /// How many receipts are kept whole: most of what a snapshot of the auction writes.
    public var wholeReceiptCount: Int { recent.count }

    /// How many bid ids the ledger holds for ordering: never more than the receipts kept whole.
    var trackedIdCount: Int { order.count }

    /// The receipts kept whole, oldest first.
    public var recentReceipts: [BidReceipt] { order.compactMap { recent[$0] } }

    /// Fingerprints of the older bids, sorted (a snapshot's stable form).
    public var olderFingerprints: [UInt64] { older.sorted() }

    /// The whole receipt of `bidId`, if it is kept whole.
    public subscript(bidId: BidID) -> BidReceipt? { recent[bidId] }

    public func lookup(_ bidId: BidID) -> Lookup {
        if let receipt = recent[bidId] { return .receipt(receipt) }
        return older.contains(Self.fingerprint(bidId)) ? .inLog : .unknown
    }

    /// Records a newly accepted bid, and turns receipts past the retention into fingerprints.
    public mutating func record(_ receipt: BidReceipt) {
        guard recent.updateValue(receipt, forKey: receipt.bidId) == nil else { return }
        order.append(receipt.bidId)
        let cutoff = receipt.at.advanced(by: .zero - Self.retention)
        while recent.count > Self.minimumRetained, let first = order.first {
            guard let oldest = recent[first] else {
                order.removeFirst()
                continue
            }
            guard oldest.at < cutoff else { break }
            recent[oldest.bidId] = nil
            older.insert(Self.fingerprint(oldest.bidId))
            order.removeFirst()
        }
    }

    /// A receipt read back from the log for a late retry: kept whole again until it ages out.
    public mutating func restore(_ receipt: BidReceipt) {
        guard recent[receipt.bidId] == nil else { return }
        recent[receipt.bidId] = receipt
        order.append(receipt.bidId)
    }

    /// FNV-1a over the id's UTF-8: stable across processes and versions (snapshots keep it).
    public static func fingerprint(_ bidId: BidID) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bidId.rawValue.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}

extension BidLedger: Hashable {
    public static func == (a: Self, b: Self) -> Bool { a.recent == b.recent && a.older == b.older }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(recent)
        hasher.combine(older)
    }
}

extension BidReceipt {
    /// The receipt of the bid `event` accepted as event number `seq`; nil for other events.
    public init?(accepting event: AuctionEvent, seq: Int64) {
        switch event {
        case .bidAccepted(let bid):
            self.init(
                bidId: bid.bidId, bidderId: bid.bidderId, maximum: bid.maximum, seq: seq, at: bid.at,
                outcome: bid.leaderBidId == bid.bidId ? .leading : .outbid, price: bid.price)
        case .boughtNow(let purchase):
            self.init(
                bidId: purchase.bidId, bidderId: purchase.bidderId, maximum: purchase.price, seq: seq,
                at: purchase.at, outcome: .boughtNow, price: purchase.price)
        case .created, .extended, .closed, .cancelled, .settlement:
            return nil
        }
    }
}
