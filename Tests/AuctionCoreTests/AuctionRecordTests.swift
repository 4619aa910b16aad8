import AuctionCore
import Testing

/// A finished lot's record is a fold of its log, and only a finished lot has one.
@Suite struct AuctionRecordTests {
    typealias F = Fixture

    /// Decides `commands` in turn (each at its time), keeping every accepted event.
    static func log(_ commands: [(AuctionCommand, Timestamp)], terms: AuctionTerms = F.terms()) -> [AuctionEvent] {
        var auction = Auction(id: F.auctionId)
        var events: [AuctionEvent] = []
        for (command, now) in [(AuctionCommand.create(terms), Timestamp(millisecondsSinceEpoch: 0))] + commands {
            if case .accept(let decided) = auction.decide(command, now: now) {
                try! auction.apply(contentsOf: decided)
                events += decided
            }
        }
        return events
    }

    @Test func anUnsoldLot_hasItsRecord_withEveryBid_andTheReason() throws {
        let late = Timestamp(millisecondsSinceEpoch: F.closesAt.millisecondsSinceEpoch - 30_000)
        let events = Self.log(
            [
                (F.bid("a1", F.alice, 2_000), F.duringSale), (F.bid("b1", F.bob, 3_000), F.duringSale),
                (F.bid("a2", F.alice, 4_000), late), (.close, F.closesAt.advanced(by: .seconds(300))),
            ], terms: F.terms(reserve: 50_000))
        let record = try #require(
            AuctionRecord.finished(F.auctionId, events: events, paddles: [F.alice: 101, F.bob: 102]))
        #expect(record.result == .unsold)
        #expect(record.reason == "reserve_not_met")
        #expect(record.seq == Int64(events.count))
        #expect(record.bids.map(\.bidId) == ["a1", "b1", "a2"])
        #expect(record.bids.map(\.paddle) == [101, 102, 101])
        #expect(record.bidderCount == 2)
        #expect(record.extensions.count == 1, "the late bid extended the end")
        #expect(record.endedAt > record.closesAt)
        #expect(record.reservePrice == 50_000 && record.hammer == nil && record.settlement == nil)
    }

    @Test func aRunningLot_orASoldOneStillSettling_hasNoRecordYet() {
        let running = Self.log([(F.bid("a1", F.alice, 2_000), F.duringSale)])
        #expect(AuctionRecord.finished(F.auctionId, events: running) == nil)
        let sold = Self.log([(F.bid("a1", F.alice, 2_000), F.duringSale), (.close, F.closesAt)])
        #expect(AuctionRecord.finished(F.auctionId, events: sold) == nil, "its settlement is not finished")
        #expect(AuctionRecord.finished(F.auctionId, events: Array(sold.dropFirst())) == nil, "not a valid log")
    }

    @Test func aCancelledLot_hasItsRecord() throws {
        let events = Self.log([
            (F.bid("a1", F.alice, 2_000), F.duringSale), (.cancel(reason: "withdrawn"), F.duringSale),
        ])
        let record = try #require(AuctionRecord.finished(F.auctionId, events: events))
        #expect(record.result == .cancelled)
        #expect(record.reason == "withdrawn")
        #expect(record.bids.count == 1)
    }

    /// After compaction the record is brought up to the live lot (its snapshot and later events)
    /// instead of being folded from a log that no longer starts at 1.
    @Test func aRecord_continuesToItsOwnLiveLot_only() throws {
        let events = Self.log([
            (F.bid("a1", F.alice, 2_000), F.duringSale), (.cancel(reason: "withdrawn"), F.duringSale),
        ])
        let record = try #require(AuctionRecord.finished(F.auctionId, events: events))
        var live = Auction(id: F.auctionId)
        try live.apply(contentsOf: events)
        #expect(record.continued(to: live) == record, "nothing happened since: the same record")
        var behind = Auction(id: F.auctionId)
        try behind.apply(contentsOf: Array(events.dropLast()))
        #expect(record.continued(to: behind) == nil, "a lot behind the record")
        #expect(record.continued(to: Auction(id: AuctionID(rawValue: "another-lot")!)) == nil, "another lot")
    }
}
