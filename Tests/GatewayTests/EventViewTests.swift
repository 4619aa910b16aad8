import AuctionCore
import Foundation
import Testing

@testable import Gateway

/// The documents streams send: typed, sorted keys, a paddle the store could not name as null,
/// nothing of an event's private parts (maxima, accounts, the buyer's settlement steps).
@Suite struct EventViewTests {
    static let lot = AuctionID(rawValue: "lot-7")!
    static let at = Timestamp(millisecondsSinceEpoch: 1_764_288_000_000)

    static func stored(_ event: AuctionEvent, seq: Int64 = 4) -> StoredEvent {
        StoredEvent(auction: lot, seq: seq, epoch: Epoch(2), event: event)
    }

    @Test func aBid_showsPaddlesNeverAccounts_andAnUnknownPaddleAsNull() throws {
        let alice = UserID(rawValue: "u-alice")!
        let bob = UserID(rawValue: "u-bob")!
        let bid = BidAccepted(
            bidId: BidID(rawValue: "b-1")!, bidderId: alice, maximum: Money(minorUnits: 90_000, currency: .eur),
            at: Self.at, price: Money(minorUnits: 12_000, currency: .eur), leaderBidId: BidID(rawValue: "b-0")!,
            leaderId: bob)
        let sse = EventView.serverSentEvent(Self.stored(.bidAccepted(bid)), paddles: [alice: 101])
        #expect(
            sse == "id: 4\nevent: bid\ndata: "
                + #"{"at":"2025-11-28T00:00:00.000Z","auctionId":"lot-7","bidId":"b-1","bidderPaddle":101,"#
                + #""leaderPaddle":null,"price":12000,"seq":4}"# + "\n\n")
        let message = EventView.json(Self.stored(.bidAccepted(bid)), paddles: [alice: 101, bob: 102])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(message.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "bid")
        #expect(object["leaderPaddle"] as? Int == 102)
        #expect(!message.contains("u-alice") && !message.contains("u-bob") && !message.contains("90000"))
    }

    @Test func everyKind_hasItsFieldsOnly() throws {
        let closed = AuctionClosed(result: .unsold(.reserveNotMet), at: Self.at)
        #expect(
            EventView.json(Self.stored(.closed(closed)), paddles: [:])
                == #"{"at":"2025-11-28T00:00:00.000Z","auctionId":"lot-7","reason":"reserve_not_met","#
                + #""result":"unsold","seq":4,"type":"closed"}"#)
        let extended = ClosingExtended(endsAt: Self.at, byBidId: BidID(rawValue: "b-9")!)
        #expect(
            EventView.json(Self.stored(.extended(extended)), paddles: [:])
                == #"{"auctionId":"lot-7","endsAt":"2025-11-28T00:00:00.000Z","seq":4,"type":"extended"}"#)
    }
}
