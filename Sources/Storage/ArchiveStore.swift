public import AuctionCore
import Foundation

/// Finished auctions as documents (`AuctionRecord`), kept for looking back and for analytics, in
/// the same store as the live logs. A record is written by the lot's owner once nothing more
/// happens to the lot by itself, and replaced only by the record of a longer log (a refund after
/// the lot was archived).
public protocol ArchiveStore: Sendable {
    /// Stores `record` unless the archive holds the same lot at the same or a later seq; whether
    /// it was stored.
    func archive(_ record: AuctionRecord, at time: Timestamp) async throws(StorageError) -> Bool
    func archivedAuction(_ id: AuctionID) async throws(StorageError) -> AuctionRecord?
    /// Where each of `ids` that is archived stands in the archive.
    func archivedMarks(of ids: [AuctionID]) async throws(StorageError) -> [AuctionID: ArchivedMark]
    /// Lots that ended in the query's period, counted and averaged by its grouping (and currency:
    /// money of different currencies is never added up).
    func lotReport(_ query: ArchiveQuery) async throws(StorageError) -> [LotReportRow]
    /// When bids came, relative to the end of their lot, for lots that ended in the query's period.
    func bidTiming(_ query: ArchiveQuery) async throws(StorageError) -> [BidTimingRow]
    /// Archived records in the query's period, by end then id, after `after` (an auction id from
    /// the last page), at most `limit`: the export.
    func archivedRecords(_ query: ArchiveQuery, after: (Timestamp, AuctionID)?, limit: Int) async throws(StorageError)
        -> [AuctionRecord]

    /// Archived lots whose live log may be compacted: archived before `cutoff` and not yet
    /// compacted through the seq of their record, oldest archived first, at most `limit`.
    func compactionCandidates(archivedBefore cutoff: Timestamp, limit: Int) async throws(StorageError) -> [AuctionID]

    /// Shrinks the live log of an archived lot to `snapshot` (the lot as of its last event) and
    /// that last event, in one transaction; the record in the archive keeps the whole history.
    ///
    /// Only when nothing is lost: the archived record is of the log through `snapshot.seq` and the
    /// log ends there, and every webhook endpoint's cursor is past the events that go. The feed's
    /// horizon moves past them, so a feed cursor before them is refused (`feedCursorExpired`)
    /// instead of resuming with a silent gap. Loading the lot (`EventStore.load`) gives the same
    /// `Auction` before and after.
    func compact(_ auction: AuctionID, keeping snapshot: Auction) async throws(StorageError) -> CompactionOutcome
}

/// What ``ArchiveStore/compact(_:keeping:)`` did.
public enum CompactionOutcome: Hashable, Sendable {
    /// The log now starts at the snapshot's seq; `removed` events went (0: it was short already).
    case compacted(removed: Int)
    /// Not compacted: the archive does not hold the log through `snapshot.seq`, or the log grew
    /// past it (a refund after the record was written). The lot is archived again first.
    case archiveBehind
    /// Not compacted: a webhook endpoint has yet to be handed events that would go.
    case webhooksBehind
}

/// How far the archive has a lot: the seq its record was folded to, and when the lot ended.
public struct ArchivedMark: Hashable, Sendable {
    public var seq: Int64
    public var endedAt: Timestamp

    public init(seq: Int64, endedAt: Timestamp) {
        self.seq = seq
        self.endedAt = endedAt
    }
}

/// Which archived lots a report is about, and how they are grouped.
public struct ArchiveQuery: Hashable, Sendable {
    public enum Grouping: String, Hashable, Sendable, CaseIterable {
        case none, sale, seller, month
    }

    /// Lots that ended at or after `from` and before `to`.
    public var from: Timestamp?
    public var to: Timestamp?
    public var sale: SaleID?
    public var seller: UserID?
    public var grouping: Grouping

    public init(
        from: Timestamp? = nil, to: Timestamp? = nil, sale: SaleID? = nil, seller: UserID? = nil,
        grouping: Grouping = .none
    ) {
        self.from = from
        self.to = to
        self.sale = sale
        self.seller = seller
        self.grouping = grouping
    }
}

/// One group of a lot report.
public struct LotReportRow: Hashable, Sendable, Codable {
    /// The sale id, seller id or month (`2026-11`) the row is about; nil without grouping (or for
    /// lots sold outside any sale).
    public var group: String?
    public var currency: String
    public var lots: Int
    public var sold: Int
    public var unsold: Int
    public var cancelled: Int
    /// Hammer prices added up, in minor units of `currency`.
    public var hammerTotal: Int64
    /// Mean of hammer ÷ starting price over the sold lots.
    public var hammerOverStart: Double?
    /// Mean of hammer ÷ reserve over the sold lots that had a reserve.
    public var hammerOverReserve: Double?
    public var bidsPerLot: Double
    public var biddersPerLot: Double
    public var extensionsPerLot: Double

    /// Sold ÷ (sold + unsold): cancelled lots were never offered to the end.
    public var sellThrough: Double? { sold + unsold > 0 ? Double(sold) / Double(sold + unsold) : nil }

    public init(
        group: String?, currency: String, lots: Int, sold: Int, unsold: Int, cancelled: Int, hammerTotal: Int64,
        hammerOverStart: Double?, hammerOverReserve: Double?, bidsPerLot: Double, biddersPerLot: Double,
        extensionsPerLot: Double
    ) {
        self.group = group
        self.currency = currency
        self.lots = lots
        self.sold = sold
        self.unsold = unsold
        self.cancelled = cancelled
        self.hammerTotal = hammerTotal
        self.hammerOverStart = hammerOverStart
        self.hammerOverReserve = hammerOverReserve
        self.bidsPerLot = bidsPerLot
        self.biddersPerLot = biddersPerLot
        self.extensionsPerLot = extensionsPerLot
    }
}

/// How many bids came in one window before their lot's end (the sniping profile).
public struct BidTimingRow: Hashable, Sendable, Codable {
    /// The window, as seconds before the end: bids at least `fromSeconds` and less than
    /// `toSeconds` (nil: no upper bound) before it.
    public var fromSeconds: Int
    public var toSeconds: Int?
    public var bids: Int

    public init(fromSeconds: Int, toSeconds: Int?, bids: Int) {
        self.fromSeconds = fromSeconds
        self.toSeconds = toSeconds
        self.bids = bids
    }

    /// The windows reported, in seconds before the end.
    public static let windows: [(Int, Int?)] = [
        (0, 10), (10, 60), (60, 600), (600, 3_600), (3_600, 86_400), (86_400, nil),
    ]
}

/// The archive's JSON form of a record: one encoder and decoder for both backends.
enum ArchiveCodec {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    static func encode(_ record: AuctionRecord) -> String {
        String(decoding: (try? encoder.encode(record)) ?? Data("{}".utf8), as: UTF8.self)
    }

    static func decode(_ text: String, auction: String) throws(StorageError) -> AuctionRecord {
        do {
            return try JSONDecoder().decode(AuctionRecord.self, from: Data(text.utf8))
        } catch {
            throw .unavailable("archived record of \(auction) cannot be read")
        }
    }
}
