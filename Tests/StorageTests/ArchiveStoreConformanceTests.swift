import AuctionCore
import Storage
import TestSupport
import Testing

/// The archive and its analytics queries, on both backends.
@Suite struct ArchiveStoreConformanceTests {
    static let day: Int64 = 86_400_000

    /// A record ending `endedAt` ms after 2026-11-01: sold at `hammer` (or unsold when nil), with
    /// bids `secondsBeforeEnd` before its end.
    static func record(
        _ id: String, sale: String? = "sale-1", seller: String = "sue", currency: String = "EUR",
        starting: Int64 = 1_000, reserve: Int64? = nil, hammer: Int64?, secondsBeforeEnd: [Int64] = [],
        bidders: [String] = ["alice", "bob"], extensions: Int = 0, endedAt: Int64, seq: Int64 = 10
    ) -> AuctionRecord {
        let end = Timestamp(millisecondsSinceEpoch: 1_793_491_200_000 + endedAt)
        let bids = secondsBeforeEnd.enumerated().map { index, seconds in
            AuctionRecord.Bid(
                bidId: "\(id)-b\(index)", bidderId: bidders[index % bidders.count], paddle: 101 + index % 2,
                price: starting + Int64(index) * 100, at: end.advanced(by: .seconds(-seconds)), boughtNow: false)
        }
        return AuctionRecord(
            auctionId: id, seq: seq, saleId: sale, sellerId: seller, title: "Lot \(id), \"quoted\"", currency: currency,
            startingPrice: starting, reservePrice: reserve, buyNowPrice: nil,
            opensAt: end.advanced(by: .seconds(-86_400)), closesAt: end, endedAt: end,
            result: hammer == nil ? .unsold : .sold, reason: hammer == nil ? "reserve_not_met" : nil, hammer: hammer,
            winnerId: hammer == nil ? nil : "alice", winnerPaddle: hammer == nil ? nil : 101, bids: bids,
            extensions: (0..<extensions).map { AuctionRecord.Extension(endsAt: end, byBidId: "\(id)-x\($0)") },
            settlement: hammer == nil ? nil : "settled", captured: hammer, refunded: nil)
    }

    @Test(arguments: Backend.allCases)
    func records_areKept_andReplacedOnlyByALongerLog(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let now = Timestamp(millisecondsSinceEpoch: 5)
            let first = Self.record("a-1", hammer: 3_000, secondsBeforeEnd: [100, 5], endedAt: 0)
            #expect(try await store.archive(first, at: now))
            #expect(try await other.archivedAuction(AuctionID(rawValue: "a-1")!) == first)
            #expect(try await !other.archive(first, at: now), "the same log again: nothing to do")
            var shorter = first
            shorter.seq = 9
            shorter.hammer = 1
            #expect(try await !store.archive(shorter, at: now), "a shorter log never replaces a longer one")
            var refunded = first
            refunded.seq = 12
            refunded.settlement = "refunded"
            refunded.refunded = 3_000
            #expect(try await store.archive(refunded, at: now))
            #expect(try await other.archivedAuction(AuctionID(rawValue: "a-1")!) == refunded)
            #expect(try await other.archivedAuction(AuctionID(rawValue: "nothing")!) == nil)
            let marks = try await other.archivedMarks(of: ["a-1", "nothing"].map { AuctionID(rawValue: $0)! })
            #expect(marks == [AuctionID(rawValue: "a-1")!: ArchivedMark(seq: 12, endedAt: first.endedAt)])
        }
    }

    @Test(arguments: Backend.allCases)
    func reports_countAndAverage_byGroupAndCurrency_withinThePeriod(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let now = Timestamp(millisecondsSinceEpoch: 5)
            let records = [
                Self.record(
                    "r-1", reserve: 2_000, hammer: 4_000, secondsBeforeEnd: [7_200, 300, 30, 2], extensions: 1,
                    endedAt: 0),
                Self.record("r-2", hammer: 2_000, secondsBeforeEnd: [5], bidders: ["carol"], endedAt: Self.day),
                Self.record("r-3", reserve: 9_000, hammer: nil, secondsBeforeEnd: [90_000], endedAt: 2 * Self.day),
                Self.record(
                    "r-4", sale: nil, seller: "sam", hammer: 1_500, secondsBeforeEnd: [1], endedAt: 3 * Self.day),
                Self.record("r-5", currency: "USD", hammer: 5_000, secondsBeforeEnd: [20, 20], endedAt: 40 * Self.day),
            ]
            for record in records { #expect(try await store.archive(record, at: now)) }

            let all = try await other.lotReport(ArchiveQuery())
            #expect(all.map(\.currency) == ["EUR", "USD"], "money of two currencies is never added up")
            let eur = try #require(all.first)
            #expect(eur.lots == 4 && eur.sold == 3 && eur.unsold == 1 && eur.cancelled == 0)
            #expect(eur.sellThrough == 0.75)
            #expect(eur.hammerTotal == 7_500)
            #expect(eur.hammerOverStart.map { abs($0 - (4.0 + 2.0 + 1.5) / 3) < 1e-9 } == true)
            #expect(eur.hammerOverReserve == 2.0, "only sold lots with a reserve")
            #expect(eur.bidsPerLot == 7.0 / 4)
            #expect(eur.biddersPerLot == 1.25, "two bidders on one lot, one on each of three")
            #expect(eur.extensionsPerLot == 0.25)

            let bySale = try await other.lotReport(ArchiveQuery(grouping: .sale))
            #expect(bySale.map(\.group) == [nil, "sale-1", "sale-1"])
            #expect(bySale.map(\.lots) == [1, 3, 1])
            let byMonth = try await other.lotReport(ArchiveQuery(grouping: .month))
            #expect(byMonth.map(\.group) == ["2026-11", "2026-12"])
            let sams = try await other.lotReport(ArchiveQuery(seller: UserID(rawValue: "sam")!))
            #expect(sams.map(\.lots) == [1])
            let period = ArchiveQuery(
                from: Timestamp(millisecondsSinceEpoch: 1_793_491_200_000 + Self.day),
                to: Timestamp(millisecondsSinceEpoch: 1_793_491_200_000 + 3 * Self.day))
            #expect(try await other.lotReport(period).map(\.lots) == [2], "from inclusive, to exclusive")

            let timing = try await other.bidTiming(ArchiveQuery())
            #expect(timing.map(\.fromSeconds) == [0, 10, 60, 600, 3_600, 86_400])
            #expect(timing.map(\.bids) == [3, 3, 1, 0, 1, 1])
            let sale = try await other.bidTiming(ArchiveQuery(sale: SaleID(rawValue: "sale-1")!))
            #expect(sale.map(\.bids).reduce(0, +) == 8, "the lot outside the sale left out")

            var exported: [AuctionRecord] = []
            var after: (Timestamp, AuctionID)?
            while true {
                let page = try await other.archivedRecords(ArchiveQuery(), after: after, limit: 2)
                exported += page
                guard page.count == 2, let last = page.last else { break }
                after = (last.endedAt, AuctionID(rawValue: last.auctionId)!)
            }
            #expect(exported == records, "every record once, by end time")
        }
    }
}
