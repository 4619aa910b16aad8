import AuctionCore
import ChaosCheck
import Foundation
import Storage
import Testing

/// A run built with the real auction rules: a log, the acknowledged bids with the states they
/// showed, and a watcher that saw every event. It passes; each test plants one kind of violation
/// and expects the checker to name it.
struct Scenario {
    let auction = AuctionID(rawValue: "lot-chaos")!
    var log: [StoredEvent] = []
    var history: [HistoryEntry] = []
    var rules: Auction
    var clock: Int64 = 1_000
    var epoch: Int64 = 1

    init(reserve: Int64? = nil) {
        rules = Auction(id: auction)
        let terms = AuctionTerms(
            auctionId: auction, sellerId: UserID(rawValue: "seller")!, title: "Chaos lot",
            startingPrice: Money(minorUnits: 1_000, currency: .eur),
            reservePrice: reserve.map { Money(minorUnits: $0, currency: .eur) },
            opensAt: Timestamp(millisecondsSinceEpoch: 0), closesAt: Timestamp(millisecondsSinceEpoch: 1_000_000),
            extensionWindow: .zero)
        take(rules.decide(.create(terms), now: Timestamp(millisecondsSinceEpoch: 1)))
        history.append(.auction(WorkloadAuction(auction: auction, at: 0)))
    }

    private mutating func take(_ decision: Auction.Decision) {
        guard case .accept(let events) = decision else { fatalError("setup: \(decision)") }
        for event in events {
            try! rules.apply(event)
            log.append(StoredEvent(auction: auction, seq: rules.seq, epoch: Epoch(epoch), event: event))
            history.append(
                .watched(
                    WatchedEvent(
                        watcher: 1, auction: auction, seq: rules.seq, type: event.kind.streamName, bidId: event.acceptedBidId,
                        node: "n1", at: clock)))
        }
    }

    /// A bid sent, accepted and acknowledged; returns its seq.
    @discardableResult
    mutating func bid(_ id: String, by bidder: String, maximum: Int64) -> Int64 {
        let invoked = clock
        clock += 10
        take(
            rules.decide(
                .placeBid(
                    PlaceBid(
                        bidId: BidID(rawValue: id)!, bidderId: UserID(rawValue: bidder)!,
                        maximum: Money(minorUnits: maximum, currency: .eur))),
                now: Timestamp(millisecondsSinceEpoch: 10)))
        let state = rules.state!
        let seq = rules.ledger[BidID(rawValue: id)!]!.seq
        history.append(
            .operation(
                HistoryOperation(
                    client: 1, node: "n1", auction: auction, bidId: BidID(rawValue: id)!,
                    bidder: UserID(rawValue: bidder)!,
                    maximum: maximum, invokedAt: invoked, completedAt: clock, outcome: .ok, seq: seq,
                    shown: ShownState(
                        seq: rules.seq, price: state.price.minorUnits, leaderId: state.leader?.bidderId,
                        bidCount: state.bidCount, shownTo: UserID(rawValue: bidder)!))))
        clock += 10
        return seq
    }

    mutating func close() {
        take(rules.decide(.close, now: Timestamp(millisecondsSinceEpoch: 1_000_000)))
    }

    func check() -> CheckReport {
        HistoryChecker.check(history: history, logs: [auction: log])
    }

    /// Replaces the event at `seq` (1-based).
    mutating func rewrite(_ seq: Int64, _ change: (inout StoredEvent) -> Void) {
        change(&log[Int(seq) - 1])
    }
}

@Suite struct HistoryCheckerTests {
    /// alice 50.00, bob 30.00 (outbid by the proxy), bob 80.00 (leads), carol 60.00, close.
    static func honest() -> Scenario {
        var run = Scenario()
        run.bid("a1", by: "alice", maximum: 5_000)
        run.bid("b1", by: "bob", maximum: 3_000)
        run.bid("b2", by: "bob", maximum: 8_000)
        run.bid("c1", by: "carol", maximum: 6_000)
        run.close()
        return run
    }

    private func expectCaught(
        _ kind: Violation.Kind, in report: CheckReport, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(!report.passed, "expected \(kind.rawValue)", sourceLocation: sourceLocation)
        #expect(
            report.violations.contains { $0.kind == kind }, "expected \(kind.rawValue), got \(report.violations)",
            sourceLocation: sourceLocation)
    }

    @Test func anHonestRun_passesEveryCheck() {
        let report = Self.honest().check()
        #expect(report.passed, "\(report.violations)")
        #expect(report.operations == 4)
        #expect(report.watchedEvents == 7, "through the settlement that opens with the hammer")
        #expect(report.summary.contains("result: PASS"))
    }

    @Test func check1_anAcknowledgedBidMissingFromTheLog() {
        var run = Self.honest()
        run.history.append(
            .operation(
                HistoryOperation(
                    client: 2, node: "n2", auction: run.auction, bidId: BidID(rawValue: "ghost")!,
                    bidder: UserID(rawValue: "dave")!,
                    maximum: 9_000, invokedAt: 50, completedAt: 60, outcome: .ok, seq: 9)))
        expectCaught(.lostAcknowledgedBid, in: run.check())
    }

    @Test func check1_aLoggedBidNobodySent() {
        var run = Self.honest()
        run.history.removeAll { if case .operation(let op) = $0 { op.bidId == BidID(rawValue: "c1")! } else { false } }
        expectCaught(.unattemptedBidInLog, in: run.check())
    }

    @Test func check1_aBidRefusedForGoodYetLogged() {
        var run = Self.honest()
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry, op.bidId == BidID(rawValue: "b1")! else { return entry }
            op.outcome = .rejected
            op.code = "below_minimum"
            op.seq = nil
            op.shown = nil
            return .operation(op)
        }
        expectCaught(.refusedBidInLog, in: run.check())
    }

    @Test func check1_anAcknowledgementWithTheWrongSeq() {
        var run = Self.honest()
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry, op.bidId == BidID(rawValue: "a1")! else { return entry }
            op.seq = 3
            return .operation(op)
        }
        expectCaught(.acknowledgedSeqMismatch, in: run.check())
    }

    @Test func check2_aGapInSeq() {
        var run = Self.honest()
        run.rewrite(6) { $0.seq = 7 }
        expectCaught(.seqGap, in: run.check())
    }

    @Test func check2_aBidIdLoggedTwice() {
        var run = Self.honest()
        run.log.insert(run.log[1], at: 5)
        for index in run.log.indices { run.log[index].seq = Int64(index + 1) }
        let report = run.check()
        expectCaught(.duplicateBidId, in: report)
        #expect(report.violations.contains { $0.kind == .invalidLog })
    }

    @Test func check2_aPriceThatGoesDown() {
        var run = Self.honest()
        run.rewrite(5) { stored in
            guard case .bidAccepted(var bid) = stored.event else { return }
            bid.price = Money(minorUnits: 1_500, currency: .eur)
            stored.event = .bidAccepted(bid)
        }
        expectCaught(.priceDecreased, in: run.check())
    }

    @Test func check2_aPriceInAnotherCurrency_isReported_notATrap() {
        var run = Self.honest()
        run.rewrite(5) { stored in
            guard case .bidAccepted(var bid) = stored.event else { return }
            bid.price = Money(minorUnits: 9_000, currency: .usd)
            stored.event = .bidAccepted(bid)
        }
        expectCaught(.currencyChanged, in: run.check())
    }

    @Test func check2_aNewLeaderAtTheSamePrice() {
        var run = Self.honest()
        run.rewrite(4) { stored in
            guard case .bidAccepted(var bid) = stored.event else { return }
            bid.price = Money(minorUnits: 5_000, currency: .eur)  // bob takes over alice's 50.00 lead at 50.00
            stored.event = .bidAccepted(bid)
        }
        run.rewrite(3) { stored in
            guard case .bidAccepted(var bid) = stored.event else { return }
            bid.price = Money(minorUnits: 5_000, currency: .eur)
            stored.event = .bidAccepted(bid)
        }
        expectCaught(.leaderChangeWithoutPriceRise, in: run.check())
    }

    /// What broken fencing leaves behind: an old owner's write after the new owner's.
    @Test func check2_anEpochThatGoesBack() {
        var run = Self.honest()
        for seq in 3...6 { run.rewrite(Int64(seq)) { $0.epoch = Epoch(2) } }
        run.rewrite(5) { $0.epoch = Epoch(1) }
        expectCaught(.epochDecreased, in: run.check())
    }

    @Test func check2_anEventTheRulesRefuse() {
        var run = Self.honest()
        run.rewrite(4) { stored in
            guard case .bidAccepted(var bid) = stored.event else { return }
            bid.leaderBidId = BidID(rawValue: "nobody")!
            stored.event = .bidAccepted(bid)
        }
        expectCaught(.invalidLog, in: run.check())
    }

    @Test func check3_aBidAcknowledgedBeforeAnotherWasSent_withTheLargerSeq() {
        var run = Self.honest()
        // c1 (seq 5) now looks acknowledged before b2 (seq 4) was sent.
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry else { return entry }
            if op.bidId == BidID(rawValue: "c1")! {
                op.invokedAt = 1
                op.completedAt = 2
            }
            return .operation(op)
        }
        expectCaught(.realTimeOrder, in: run.check())
    }

    @Test func check3_concurrentBids_mayBeInEitherOrder() {
        var run = Self.honest()
        // c1 sent before b2 was acknowledged: concurrent, so seq 5 after seq 4 is fine.
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry else { return entry }
            if op.bidId == BidID(rawValue: "c1")! { op.invokedAt = 1 }
            return .operation(op)
        }
        #expect(run.check().passed)
    }

    @Test func check4_aClientShownAStateTheLogNeverHad() {
        var run = Self.honest()
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry, op.bidId == BidID(rawValue: "b2")! else { return entry }
            let flipped: ShownState.Leader = op.shown?.leader == .requester ? .another : .requester
            op.shown?.leader = flipped
            return .operation(op)
        }
        expectCaught(.divergentState, in: run.check())
    }

    @Test func check4_aWatcherShownAnotherEvent() {
        var run = Self.honest()
        run.history = run.history.map { entry in
            guard case .watched(var event) = entry, event.seq == 3 else { return entry }
            event.bidId = BidID(rawValue: "elsewhere")!
            return .watched(event)
        }
        expectCaught(.divergentWatchedEvent, in: run.check())
    }

    @Test func check5_aBidAfterTheClose() {
        var run = Self.honest()
        run.log.swapAt(4, 5)
        for index in run.log.indices { run.log[index].seq = Int64(index + 1) }
        run.history.removeAll { if case .watched = $0 { true } else { false } }
        run.history = run.history.map { entry in
            guard case .operation(var op) = entry, op.bidId == BidID(rawValue: "c1")! else { return entry }
            op.seq = 6
            op.shown = nil
            return .operation(op)
        }
        expectCaught(.closeViolation, in: run.check())
    }

    @Test func check5_theWrongWinner() {
        var run = Self.honest()
        run.rewrite(6) { stored in
            stored.event = .closed(
                AuctionClosed(
                    result: .sold(
                        winnerId: UserID(rawValue: "carol")!, bidId: BidID(rawValue: "c1")!,
                        price: Money(minorUnits: 6_100, currency: .eur)),
                    at: Timestamp(millisecondsSinceEpoch: 1_000_000)))
        }
        expectCaught(.closeViolation, in: run.check())
    }

    @Test func check6_aWatcherThatMissedOne_andOneThatSawOneTwice() {
        var gap = Self.honest()
        gap.history.removeAll { if case .watched(let event) = $0 { event.seq == 3 } else { false } }
        expectCaught(.watcherGap, in: gap.check())

        var repeated = Self.honest()
        if case .watched(let event)? = repeated.history.first(where: {
            if case .watched(let e) = $0 { e.seq == 4 } else { false }
        }) {
            repeated.history.append(.watched(event))
        }
        expectCaught(.watcherRepeatOrReorder, in: repeated.check())
    }

    @Test func everyViolationKind_isPlantedByOneOfTheseTests() {
        // The kinds above; a new kind needs a test that plants it.
        let planted: Set<Violation.Kind> = [
            .lostAcknowledgedBid, .unattemptedBidInLog, .refusedBidInLog, .acknowledgedSeqMismatch, .seqGap,
            .duplicateBidId,
            .priceDecreased, .leaderChangeWithoutPriceRise, .currencyChanged, .epochDecreased, .invalidLog,
            .realTimeOrder,
            .divergentState,
            .divergentWatchedEvent, .closeViolation, .watcherGap, .watcherRepeatOrReorder,
        ]
        #expect(planted == Set(Violation.Kind.allCases))
    }

    @Test func historyLines_roundTripThroughJSON() throws {
        let run = Self.honest()
        for entry in run.history {
            let data = try JSONEncoder().encode(entry)
            #expect(try JSONDecoder().decode(HistoryEntry.self, from: data) == entry)
        }
    }
}
