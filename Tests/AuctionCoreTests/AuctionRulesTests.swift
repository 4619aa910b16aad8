import AuctionCore
import Foundation
import Testing

@Suite struct AuctionRulesTests {
    typealias F = Fixture

    @Test func firstBid_leadsAtTheStartingPrice_evenWithAHigherMaximum() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        #expect(auction.running.price == F.usd(1_000))
        #expect(auction.running.leader?.bidderId == F.alice)
        #expect(auction.running.minimumNextBid == F.usd(1_050))
    }

    @Test func challenger_aboveLeaderMaximum_leadsAtOneIncrementOverIt() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        auction.handle(F.bid("b1", F.bob, 8_000))
        // 50.00 is in the 25–100 tier: increment 1.00.
        #expect(auction.running.price == F.usd(5_100))
        #expect(auction.running.leader?.bidderId == F.bob)
    }

    @Test func challenger_belowLeaderMaximum_isAcceptedButOutbidByTheProxy() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        let decision = auction.handle(F.bid("b1", F.bob, 3_000))
        guard case .accept = decision else {
            Issue.record("expected acceptance, got \(decision)")
            return
        }
        #expect(auction.running.price == F.usd(3_100))
        #expect(auction.running.leader?.bidderId == F.alice)
        #expect(auction.ledger[BidID(rawValue: "b1")!]?.outcome == .outbid)
    }

    @Test func equalMaxima_theEarlierBidKeepsTheLead() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        auction.handle(F.bid("b1", F.bob, 5_000))
        #expect(auction.running.leader?.bidderId == F.alice)
        #expect(auction.running.price == F.usd(5_000))
    }

    @Test func leaderRaisingOwnMaximum_keepsThePrice() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        auction.handle(F.bid("b1", F.bob, 3_000))
        auction.handle(F.bid("a2", F.alice, 9_000))
        #expect(auction.running.price == F.usd(3_100))
        #expect(auction.running.leader?.maximum == F.usd(9_000))
    }

    @Test func leaderRaisingOwnMaximum_mustExceedIt() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        #expect(
            auction.handle(F.bid("a2", F.alice, 5_000))
                == .reject(.maximumNotAboveCurrent(currentMaximum: F.usd(5_000))))
    }

    @Test func reserve_priceJumpsToItOnceAMaximumReachesIt() {
        var auction = F.created(F.terms(reserve: 20_000))
        auction.handle(F.bid("a1", F.alice, 15_000))
        #expect(auction.running.price == F.usd(1_000))
        #expect(!auction.running.reserveMet)
        auction.handle(F.bid("a2", F.alice, 25_000))
        #expect(auction.running.price == F.usd(20_000))
        #expect(auction.running.reserveMet)
    }

    @Test func belowMinimum_isRejectedWithTheMinimum() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        #expect(auction.handle(F.bid("b1", F.bob, 1_040)) == .reject(.belowMinimum(minimum: F.usd(1_050))))
        #expect(auction.handle(F.bid("c1", F.carol, 999)) == .reject(.belowMinimum(minimum: F.usd(1_050))))
    }

    @Test func badInput_isRejectedAndChangesNothing() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        let before = auction
        let euros = AuctionCommand.placeBid(
            PlaceBid(bidId: BidID(rawValue: "b1")!, bidderId: F.bob, maximum: Money(minorUnits: 9_000, currency: .eur)))
        #expect(auction.handle(euros) == .reject(.currencyMismatch(expected: .usd)))
        #expect(auction.handle(F.bid("b2", F.bob, -5)) == .reject(.invalidAmount))
        #expect(auction.handle(F.bid("b3", F.bob, 0)) == .reject(.invalidAmount))
        #expect(
            auction.handle(F.bid("b4", F.bob, Money.maximumMinorUnits + 1))
                == .reject(.amountTooLarge(limitMinorUnits: Money.maximumMinorUnits)))
        #expect(auction.handle(F.bid("s1", F.seller, 9_000)) == .reject(.sellerCannotBid))
        #expect(auction.handle(F.bid("a1", F.bob, 9_000)) == .reject(.bidIdConflict(BidID(rawValue: "a1")!)))
        #expect(auction.handle(F.bid("a1", F.alice, 6_000)) == .reject(.bidIdConflict(BidID(rawValue: "a1")!)))
        #expect(auction == before)
    }

    @Test func unknownAuction_isRejected() {
        let auction = Auction(id: F.auctionId)
        #expect(auction.decide(F.bid("a1", F.alice, 5_000), now: F.duringSale) == .reject(.auctionNotFound))
        #expect(auction.decide(.close, now: F.closesAt) == .reject(.auctionNotFound))
    }

    @Test func resubmittedBid_returnsTheSameReceipt_andAppendsNothing() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        let receipt = auction.ledger[BidID(rawValue: "a1")!]!
        auction.handle(F.bid("b1", F.bob, 9_000))
        let before = auction
        #expect(auction.handle(F.bid("a1", F.alice, 5_000)) == .alreadyAccepted(receipt))
        #expect(auction == before)
        // Still answered after the close.
        auction.handle(.close, at: F.closesAt)
        #expect(auction.decide(F.bid("a1", F.alice, 5_000), now: F.closesAt) == .alreadyAccepted(receipt))
    }

    @Test func timing_noBidBeforeOpenOrAfterEnd() {
        var auction = F.created()
        #expect(
            auction.handle(F.bid("a1", F.alice, 5_000), at: Timestamp(millisecondsSinceEpoch: 10))
                == .reject(.notOpenYet(opensAt: F.opensAt)))
        #expect(auction.handle(F.bid("a2", F.alice, 5_000), at: F.closesAt) == .reject(.auctionClosed))
    }

    @Test func softClose_lateBidExtendsTheEnd() {
        var auction = F.created()
        let late = F.closesAt.advanced(by: .seconds(-30))
        let decision = auction.handle(F.bid("a1", F.alice, 5_000), at: late)
        guard case .accept(let events) = decision else {
            Issue.record("\(decision)")
            return
        }
        #expect(events.count == 2)
        #expect(auction.running.endsAt == late.advanced(by: .seconds(120)))
        // The old end has passed, the new one has not: still open.
        #expect(auction.handle(F.bid("b1", F.bob, 6_000), at: F.closesAt).isAccept)
        #expect(
            auction.decide(.close, now: F.closesAt)
                == .reject(.notYetEnded(endsAt: F.closesAt.advanced(by: .seconds(120)))))
    }

    @Test func softClose_zeroWindowNeverExtends() {
        var auction = F.created(F.terms(extensionWindow: .zero))
        let late = F.closesAt.advanced(by: .seconds(-1))
        auction.handle(F.bid("a1", F.alice, 5_000), at: late)
        #expect(auction.running.endsAt == F.closesAt)
    }

    @Test func close_soldToTheLeaderAtThePrice_onlyOnce() {
        var auction = F.created()
        auction.handle(F.bid("a1", F.alice, 5_000))
        auction.handle(F.bid("b1", F.bob, 3_000))
        #expect(auction.decide(.close, now: F.duringSale) == .reject(.notYetEnded(endsAt: F.closesAt)))
        auction.handle(.close, at: F.closesAt)
        #expect(
            auction.running.status
                == .closed(.sold(winnerId: F.alice, bidId: BidID(rawValue: "a1")!, price: F.usd(3_100))))
        #expect(auction.decide(.close, now: F.closesAt) == .reject(.auctionClosed))
        #expect(auction.decide(F.bid("c1", F.carol, 90_000), now: F.closesAt) == .reject(.auctionClosed))
    }

    @Test func close_unsoldWithoutBidsOrBelowReserve() {
        var empty = F.created()
        empty.handle(.close, at: F.closesAt)
        #expect(empty.running.status == .closed(.unsold(.noBids)))
        var belowReserve = F.created(F.terms(reserve: 20_000))
        belowReserve.handle(F.bid("a1", F.alice, 15_000))
        belowReserve.handle(.close, at: F.closesAt)
        #expect(belowReserve.running.status == .closed(.unsold(.reserveNotMet)))
    }

    @Test func buyNow_endsTheSale_andIsGoneAfterTheFirstBid() {
        var auction = F.created(F.terms(buyNow: 50_000))
        let purchase = AuctionCommand.buyNow(
            BuyNow(bidId: BidID(rawValue: "a1")!, bidderId: F.alice, price: F.usd(50_000)))
        #expect(
            auction.decide(
                .buyNow(BuyNow(bidId: BidID(rawValue: "x")!, bidderId: F.alice, price: F.usd(40_000))),
                now: F.duringSale)
                == .reject(.buyNowPriceMismatch(buyNowPrice: F.usd(50_000))))
        var other = auction
        auction.handle(purchase)
        #expect(
            auction.running.status
                == .closed(.sold(winnerId: F.alice, bidId: BidID(rawValue: "a1")!, price: F.usd(50_000))))
        other.handle(F.bid("b1", F.bob, 2_000))
        #expect(other.handle(purchase) == .reject(.buyNowUnavailable))
    }

    @Test func buyNow_withReserve_staysUntilTheReserveIsMet() {
        var auction = F.created(F.terms(reserve: 20_000, buyNow: 50_000))
        auction.handle(F.bid("b1", F.bob, 15_000))
        #expect(auction.running.buyNowAvailable)
        auction.handle(F.bid("b2", F.bob, 21_000))
        #expect(!auction.running.buyNowAvailable)
    }

    @Test func cancel_onlyWhileRunning_andStopsBids() {
        var auction = F.created()
        #expect(auction.decide(.cancel(reason: " "), now: F.duringSale).isReject)
        auction.handle(.cancel(reason: "consignor withdrew the lot"))
        #expect(auction.decide(F.bid("a1", F.alice, 5_000), now: F.duringSale) == .reject(.auctionCancelled))
        #expect(auction.decide(.cancel(reason: "again"), now: F.duringSale) == .reject(.auctionCancelled))
        #expect(auction.decide(.close, now: F.closesAt) == .reject(.auctionCancelled))
    }

    @Test func create_refusesBadTermsAndDuplicates() {
        let fresh = Auction(id: F.auctionId)
        let now = Timestamp(millisecondsSinceEpoch: 0)
        var reversed = F.terms()
        reversed.closesAt = F.opensAt
        #expect(fresh.decide(.create(reversed), now: now).isReject)
        #expect(fresh.decide(.create(F.terms(starting: 1_000, reserve: 500)), now: now).isReject)
        #expect(fresh.decide(.create(F.terms(starting: 1_000, buyNow: 1_000)), now: now).isReject)
        #expect(fresh.decide(.create(F.terms(starting: 0)), now: now).isReject)
        #expect(fresh.decide(.create(F.terms()), now: F.closesAt).isReject)
        #expect(F.created().decide(.create(F.terms(starting: 2_000)), now: now) == .reject(.auctionAlreadyExists))
    }

    /// A create sent again with the same terms (a retry after its answer was lost) succeeds again
    /// without a second `created` event; other terms for the same id are refused.
    @Test func create_sentAgainWithTheSameTerms_isAnsweredAgain() {
        let created = F.created()
        #expect(created.decide(.create(F.terms()), now: F.duringSale) == .alreadyCreated)
        #expect(created.decide(.create(F.terms(starting: 2_000)), now: F.duringSale) == .reject(.auctionAlreadyExists))
    }

    @Test func apply_refusesEventsThatCannotFollow() {
        var auction = Auction(id: F.auctionId)
        let bid = AuctionEvent.bidAccepted(
            BidAccepted(
                bidId: BidID(rawValue: "a1")!, bidderId: F.alice, maximum: F.usd(5), at: F.duringSale, price: F.usd(5),
                leaderBidId: BidID(rawValue: "a1")!, leaderId: F.alice))
        #expect(throws: EventApplicationError.self) { try auction.apply(bid) }
        #expect(auction == Auction(id: F.auctionId))
    }

    @Test func increments_standardTableFollowsTheTiers() {
        let table = IncrementTable.standard(for: .usd)
        #expect(table.increment(at: 99) == 5)
        #expect(table.increment(at: 100) == 25)
        #expect(table.increment(at: 499_999) == 5_000)
        #expect(table.increment(at: 500_000) == 10_000)
        let yen = IncrementTable.standard(for: .jpy)
        #expect(yen.increment(at: 0) == 1)
        #expect(yen.increment(at: 5_000) == 100)
        #expect(throws: AuctionRejection.self) {
            try IncrementTable(tiers: [.init(from: 0, increment: 10), .init(from: 100, increment: 5)])
        }
    }

    @Test func money_printsExactDecimals() {
        #expect(F.usd(123_405).description == "1234.05 USD")
        #expect(Money(minorUnits: 1_500, currency: .jpy).description == "1500 JPY")
        #expect(Money(minorUnits: -7, currency: .bhd).description == "-0.007 BHD")
    }
}

extension Auction.Decision {
    var isAccept: Bool { if case .accept = self { true } else { false } }
    var isReject: Bool { if case .reject = self { true } else { false } }
}

/// Found by schemathesis: an absurd extension window from a request trapped while the terms were
/// encoded for forwarding. Durations from input now saturate, and the rules refuse them.
@Suite struct UntrustedDurationTests {
    @Test func wholeMilliseconds_saturatesInsteadOfTrapping() {
        #expect(Duration.seconds(6_983_890_272_650_103_808).wholeMilliseconds == .max)
        #expect(Duration.seconds(-6_983_890_272_650_103_808).wholeMilliseconds == .min)
        #expect(Duration.milliseconds(1_500).wholeMilliseconds == 1_500)
    }

    @Test func anAbsurdExtensionWindow_isRefusedByTheRules() throws {
        let terms = Fixture.terms(extensionWindow: .seconds(6_983_890_272_650_103_808))
        let encoded = try JSONEncoder().encode(terms)
        #expect(!encoded.isEmpty)
        let auction = Auction(id: Fixture.auctionId)
        guard case .reject(.invalidTerms) = auction.decide(.create(terms), now: Timestamp(millisecondsSinceEpoch: 0))
        else {
            Issue.record("expected invalid_terms")
            return
        }
    }
}

/// Snapshots are stored as JSON; the receipts live beside the state in memory but inside it in the
/// stored form, the shape earlier versions wrote.
@Suite struct AuctionSnapshotFormTests {
    @Test func snapshot_keepsReceiptsInsideTheState_andRoundTrips() throws {
        typealias F = Fixture
        var auction = F.created()
        auction.mustApply(auction.decide(F.bid("a1", F.alice, 5_000), now: F.duringSale))
        auction.mustApply(auction.decide(F.bid("b1", F.bob, 9_000), now: F.duringSale))
        let data = try JSONEncoder().encode(auction)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let state = try #require(object["state"] as? [String: Any])
        let receipts = try #require(state["receipts"] as? [String: Any])
        #expect(Set(receipts.keys) == ["a1", "b1"])
        #expect(object["receipts"] == nil)
        let decoded = try JSONDecoder().decode(Auction.self, from: data)
        #expect(decoded == auction)
        #expect(decoded.ledger[BidID(rawValue: "b1")!]?.outcome == .leading)
    }

    @Test func snapshot_ofAnAuctionNotCreated_roundTrips() throws {
        let auction = Auction(id: Fixture.auctionId)
        #expect(try JSONDecoder().decode(Auction.self, from: JSONEncoder().encode(auction)) == auction)
    }
}
