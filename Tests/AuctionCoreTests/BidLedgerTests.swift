@testable import AuctionCore
import Foundation
import Testing

/// The bid ledger keeps recent receipts whole and older bids as fingerprints: memory that does not
/// grow by a receipt per bid, and answers to resubmissions that stay exact at any age.
@Suite struct BidLedgerTests {
    typealias F = Fixture

    /// 2,000 bids, one every 100 ms of event time: 200 s in all, so the first ones are past the
    /// retention by the end.
    static func busyAuction(bids: Int = 2_000) -> (Auction, [BidReceipt]) {
        var auction = F.created(F.terms(extensionWindow: .zero))
        var receipts: [BidReceipt] = []
        for index in 0..<bids {
            let now = F.opensAt.advanced(by: .milliseconds(Int64(100 * index)))
            let bidder = index % 2 == 0 ? F.alice : F.bob
            let minimum = auction.running.minimumNextBid.minorUnits
            let id = BidID(rawValue: "bid-\(index)")!
            auction.handle(.placeBid(PlaceBid(bidId: id, bidderId: bidder, maximum: F.usd(minimum))), at: now)
            receipts.append(auction.ledger[id]!)
        }
        return (auction, receipts)
    }

    @Test func oldReceipts_becomeFingerprints_recentOnesStayWhole() {
        let (auction, receipts) = Self.busyAuction()
        let ledger = auction.ledger
        // Bids of the last 120 s of event time are whole (1,200 of them at 10 a second), plus the
        // one that marks the edge.
        #expect((1_200...1_202).contains(ledger.recentReceipts.count), "\(ledger.recentReceipts.count) whole")
        #expect(ledger.recentReceipts == Array(receipts.suffix(ledger.recentReceipts.count)))
        #expect(ledger.olderFingerprints.count == 2_000 - ledger.recentReceipts.count)
        #expect(ledger.lookup(receipts[0].bidId) == .inLog)
        #expect(ledger.lookup(receipts[1_999].bidId) == .receipt(receipts[1_999]))
        #expect(ledger.lookup(BidID(rawValue: "never-sent")!) == .unknown)
    }

    /// The ids of receipts that turned into fingerprints are let go at once: a lot's memory for
    /// its old bids is their fingerprints alone, not their id strings too.
    @Test func agedReceipts_leaveNoIdsBehind() {
        for bids in [BidLedger.minimumRetained, 1_500, 5_000] {
            let (auction, _) = Self.busyAuction(bids: bids)
            #expect(auction.ledger.trackedIdCount == auction.ledger.wholeReceiptCount, "\(bids) bids")
        }
    }

    @Test func aLateRetry_isLookedUpInTheLog_thenAnsweredWithItsReceipt() {
        var (auction, receipts) = Self.busyAuction()
        let old = receipts[3]
        let retry = AuctionCommand.placeBid(PlaceBid(bidId: old.bidId, bidderId: old.bidderId, maximum: old.maximum))
        let now = F.opensAt.advanced(by: .seconds(300))
        #expect(auction.decide(retry, now: now) == .lookUpInLog(old.bidId))
        // The log has it: restored, the retry is answered with the original receipt.
        auction.restore(old)
        #expect(auction.decide(retry, now: now) == .alreadyAccepted(old))
        // Its fingerprint stays: another old id may share it.
        #expect(auction.ledger.olderFingerprints.contains(BidLedger.fingerprint(old.bidId)))
        // The same id with another maximum is a conflict, never a second bid.
        let changed = AuctionCommand.placeBid(
            PlaceBid(bidId: old.bidId, bidderId: old.bidderId, maximum: old.maximum + F.usd(100)))
        #expect(auction.decide(changed, now: now) == .reject(.bidIdConflict(old.bidId)))
    }

    @Test func aFingerprintTheLogDoesNotConfirm_isANewBid() {
        let (auction, receipts) = Self.busyAuction()
        // As if another id had the same fingerprint as an old bid: the log search found nothing.
        let id = receipts[5].bidId
        let minimum = auction.running.minimumNextBid
        let bid = AuctionCommand.placeBid(PlaceBid(bidId: id, bidderId: F.carol, maximum: minimum))
        let now = F.opensAt.advanced(by: .seconds(300))
        #expect(auction.decide(bid, now: now) == .lookUpInLog(id))
        guard case .accept = auction.decide(bid, now: now, checkedLogFor: id) else {
            Issue.record("a bid the log does not know must be decided as new")
            return
        }
    }

    @Test func snapshot_keepsFingerprints_andRoundTrips() throws {
        let (auction, _) = Self.busyAuction()
        let data = try JSONEncoder().encode(auction)
        let decoded = try JSONDecoder().decode(Auction.self, from: data)
        #expect(decoded == auction)
        #expect(decoded.ledger.olderFingerprints == auction.ledger.olderFingerprints)
        // Compact: the 2,000 bids cost far less than a whole receipt each.
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let state = try #require(object["state"] as? [String: Any])
        let hex = try #require(state["olderBidFingerprints"] as? String)
        #expect(hex.utf8.count == 16 * auction.ledger.olderFingerprints.count)
    }

    @Test func snapshotOfAnEarlierVersion_withEveryReceipt_loadsTrimmed() throws {
        let (auction, receipts) = Self.busyAuction()
        // What earlier versions wrote: every receipt whole, no fingerprints.
        var object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(auction)) as? [String: Any])
        var state = try #require(object["state"] as? [String: Any])
        state["olderBidFingerprints"] = nil
        let encoder = JSONEncoder()
        state["receipts"] = try JSONSerialization.jsonObject(
            with: encoder.encode(Dictionary(uniqueKeysWithValues: receipts.map { ($0.bidId, $0) })))
        object["state"] = state
        let decoded = try JSONDecoder().decode(Auction.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(decoded.ledger == auction.ledger)
    }

    @Test func corruptFingerprints_failTheSnapshot() throws {
        let (auction, _) = Self.busyAuction(bids: 1_000)
        var object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(auction)) as? [String: Any])
        var state = try #require(object["state"] as? [String: Any])
        state["olderBidFingerprints"] = "0123456789abcdeX"
        object["state"] = state
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Auction.self, from: JSONSerialization.data(withJSONObject: object))
        }
    }
}
