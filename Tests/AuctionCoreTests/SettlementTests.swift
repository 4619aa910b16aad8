import AuctionCore
import Foundation
import PropertyBased
import TestSupport
import Testing

/// The money rules and the settlement state machine: examples that read as stories, then random
/// command sequences against the invariants (amounts add up, one capture per round, refunds within
/// the capture, every path ends in one finished state, replay rebuilds the live state).
@Suite struct SettlementTests {
    typealias F = Fixture

    static let fees = FeeSchedule.standard
    static let t0 = F.closesAt
    static let card = PaymentMethodID(rawValue: "pm_card_visa")!
    static let otherCard = PaymentMethodID(rawValue: "pm_card_mastercard")!
    static let intent = PaymentIntentID(rawValue: "pi_1")!

    // MARK: - Money rules

    @Test func buyersPremium_isMarginalByTier() {
        // 26 % of 1,000,000.00 + 21 % of 500,000.00.
        #expect(Self.fees.invoice(hammer: F.usd(150_000_000)).buyerPremium == F.usd(36_500_000))
        // 26 % + 21 % of 5,000,000.00 + 15 % of 1,000,000.00.
        #expect(Self.fees.invoice(hammer: F.usd(700_000_000)).buyerPremium == F.usd(146_000_000))
        #expect(Self.fees.invoice(hammer: F.usd(10_000)).buyerPremium == F.usd(2_600))
        // Tier limits are major units: ¥1,500,000 pays 26 % on the first million yen.
        let yen = Self.fees.invoice(hammer: Money(minorUnits: 1_500_000, currency: .jpy))
        #expect(yen.buyerPremium == Money(minorUnits: 365_000, currency: .jpy))
        let invoice = Self.fees.invoice(hammer: F.usd(12_345))
        #expect(invoice.buyerPremium == F.usd(3_210), "3,209.7 cents, half up")
        #expect(invoice.total == F.usd(15_555))
        #expect(invoice.sellerCommission == F.usd(1_235), "1,234.5 cents, half up")
        #expect(invoice.sellerPayout == F.usd(11_110))
    }

    @Test func feeSchedules_areValidated() {
        #expect(throws: FeeSchedule.Problem.self) {
            var fees = FeeSchedule.standard
            fees.buyerPremium = [.init(upToMajorUnits: 10, rateBasisPoints: 2_000)]
            try fees.validate()
        }
        #expect(throws: FeeSchedule.Problem.self) {
            var fees = FeeSchedule.standard
            fees.sellerCommissionBasisPoints = 10_001
            try fees.validate()
        }
        #expect(throws: Never.self) { try FeeSchedule.standard.validate() }
    }

    @Test func amounts_alwaysAddUp_andPremiumsNeverFall() async {
        let hammers = zip(Gen.int64(in: 1...Money.maximumMinorUnits), Gen.int64(in: 1...Money.maximumMinorUnits))
        await offThePool {
            await propertyCheck(count: 2_000, input: hammers) { first, second in
                let low = Self.fees.invoice(hammer: F.usd(min(first, second)))
                let high = Self.fees.invoice(hammer: F.usd(max(first, second)))
                for invoice in [low, high] {
                    #expect(invoice.total.minorUnits == invoice.hammer.minorUnits + invoice.buyerPremium.minorUnits)
                    #expect(
                        invoice.sellerPayout.minorUnits + invoice.sellerCommission.minorUnits
                            == invoice.hammer.minorUnits)
                    #expect(invoice.buyerPremium.minorUnits * 10_000 <= invoice.hammer.minorUnits * 2_600 + 5_000)
                    #expect(invoice.buyerPremium.minorUnits * 10_000 >= invoice.hammer.minorUnits * 1_500 - 5_000)
                }
                #expect(low.buyerPremium <= high.buyerPremium)
            }
        }
    }

    // MARK: - Paths

    /// Runs `command` at `now`, applies what it decided, returns the decision.
    @discardableResult
    static func run(_ settlement: inout Settlement, _ command: SettlementCommand, at now: Timestamp = t0)
        -> Settlement.Decision
    {
        let decision = settlement.decide(command, fees: fees, now: now)
        if case .accept(let events) = decision {
            for event in events { try! settlement.apply(event) }
        }
        return decision
    }

    static func opened(hammer: Int64 = 100_000) -> Settlement {
        var settlement = Settlement(auctionId: F.auctionId)
        run(&settlement, .open(buyerId: F.alice, hammer: F.usd(hammer)))
        return settlement
    }

    @Test func aSoldLot_isAuthorizedCapturedAndSettled_withKeysLoggedBeforeEachCall() {
        var settlement = Self.opened()
        #expect(settlement.phase == .due)
        #expect(settlement.dueBy == Self.t0.advanced(by: .seconds(3 * 86_400)))
        #expect(settlement.nextCommand(now: Self.t0) == nil, "nothing to do before a method is on file")
        #expect(Self.run(&settlement, .choosePaymentMethod(buyerId: F.bob, method: Self.card)) == .reject(.notTheBuyer))
        Self.run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: Self.card))
        #expect(settlement.nextCommand(now: Self.t0) == .startAuthorization)
        Self.run(&settlement, .startAuthorization)
        #expect(settlement.phase == .authorizing)
        #expect(settlement.inFlight?.idempotencyKey == "settle:lot-42:1:authorize")
        #expect(settlement.inFlight?.amount == F.usd(126_000))
        #expect(settlement.nextCommand(now: Self.t0) == nil, "the call in flight is re-sent, nothing else")
        Self.run(&settlement, .authorizationSucceeded(attempt: 1, intent: Self.intent))
        #expect(settlement.nextCommand(now: Self.t0) == .startCapture)
        Self.run(&settlement, .startCapture)
        #expect(settlement.inFlight?.idempotencyKey == "settle:lot-42:2:capture")
        #expect(
            Self.run(&settlement, .captureSucceeded(attempt: 2, amount: F.usd(100_000)))
                == .reject(.amountMismatch(expected: F.usd(126_000))))
        Self.run(&settlement, .captureSucceeded(attempt: 2, amount: F.usd(126_000)))
        #expect(settlement.phase == .settled)
        #expect(settlement.captured == F.usd(126_000))
        // A late or repeated webhook changes nothing; a second capture cannot start.
        #expect(Self.run(&settlement, .captureSucceeded(attempt: 2, amount: F.usd(126_000))) == .unchanged)
        #expect(Self.run(&settlement, .authorizationSucceeded(attempt: 1, intent: Self.intent)) == .unchanged)
        #expect(Self.run(&settlement, .startCapture) == .reject(.wrongPhase(.settled)))
    }

    @Test func aDecline_letsTheBuyerTryAnotherMethod_untilTheDeadline() {
        var settlement = Self.opened()
        Self.run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: Self.card))
        Self.run(&settlement, .startAuthorization)
        Self.run(&settlement, .authorizationDeclined(attempt: 1, reason: "card_declined"))
        #expect(settlement.phase == .declined)
        #expect(settlement.nextCommand(now: Self.t0) == nil, "waits for another method")
        let halfway = Self.t0.advanced(by: .seconds(36 * 3_600))
        #expect(settlement.nextCommand(now: halfway) == .remind)
        Self.run(&settlement, .remind, at: halfway)
        Self.run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: Self.otherCard), at: halfway)
        #expect(settlement.nextCommand(now: halfway) == .startAuthorization)
        Self.run(&settlement, .startAuthorization, at: halfway)
        #expect(settlement.inFlight?.idempotencyKey == "settle:lot-42:2:authorize")
        #expect(settlement.inFlight?.paymentMethod == Self.otherCard)
        let late = settlement.dueBy!.advanced(by: .seconds(1))
        #expect(
            Self.run(&settlement, .declareDefault, at: late) == .reject(.paymentInFlight),
            "a call that may have charged is resolved before any default")
        Self.run(&settlement, .authorizationSucceeded(attempt: 2, intent: Self.intent), at: late)
        #expect(settlement.phase == .authorized)
    }

    @Test func aDefault_leadsToASecondChance_whichIsItsOwnSettlement() {
        var settlement = Self.opened()
        let late = settlement.dueBy!
        #expect(settlement.nextCommand(now: late) == .declareDefault)
        Self.run(&settlement, .declareDefault, at: late)
        #expect(settlement.phase == .defaulted)
        #expect(settlement.defaulters == [F.alice])
        let offer = SecondChanceOffer(bidderId: F.bob, price: F.usd(80_000), expiresAt: late.advanced(by: .seconds(60)))
        Self.run(&settlement, .offerSecondChance(offer: offer), at: late)
        #expect(settlement.phase == .secondChanceOffered)
        #expect(
            Self.run(&settlement, .answerSecondChance(bidderId: F.carol, accept: true), at: late)
                == .reject(.notTheOfferedBidder))
        Self.run(&settlement, .answerSecondChance(bidderId: F.bob, accept: true), at: late)
        #expect(settlement.phase == .due)
        #expect(settlement.round == 2)
        #expect(settlement.buyerId == F.bob)
        #expect(settlement.invoice?.hammer == F.usd(80_000))
        #expect(settlement.invoice?.total == F.usd(100_800))
        // Bob defaults too: no third chance.
        Self.run(&settlement, .declareDefault, at: settlement.dueBy!)
        let another = SecondChanceOffer(
            bidderId: F.carol, price: F.usd(70_000), expiresAt: late.advanced(by: .seconds(9_999_999)))
        Self.run(&settlement, .offerSecondChance(offer: another), at: settlement.dueBy!)
        #expect(settlement.phase == .unsold)
    }

    @Test func anUnansweredOffer_expires_andTheLotIsUnsold() {
        var settlement = Self.opened()
        Self.run(&settlement, .declareDefault, at: settlement.dueBy!)
        let offer = SecondChanceOffer(
            bidderId: F.bob, price: F.usd(80_000), expiresAt: settlement.dueBy!.advanced(by: .seconds(60)))
        Self.run(&settlement, .offerSecondChance(offer: offer), at: settlement.dueBy!)
        #expect(settlement.nextCommand(now: offer.expiresAt) == .expireSecondChance)
        #expect(
            Self.run(
                &settlement, .answerSecondChance(bidderId: F.bob, accept: true), at: offer.expiresAt)
                == .reject(.offerExpired))
        Self.run(&settlement, .expireSecondChance, at: offer.expiresAt)
        #expect(settlement.phase == .unsold)
    }

    @Test func refunds_stayWithinTheCapture() {
        var settlement = Self.paid()
        #expect(
            Self.run(&settlement, .startRefund(amount: F.usd(126_001)))
                == .reject(.refundAboveCaptured(refundable: F.usd(126_000))))
        Self.run(&settlement, .startRefund(amount: F.usd(26_000)))
        #expect(settlement.inFlight?.idempotencyKey == "settle:lot-42:3:refund")
        #expect(Self.run(&settlement, .startRefund(amount: F.usd(1))) == .reject(.paymentInFlight))
        Self.run(&settlement, .refundSucceeded(attempt: 3))
        #expect(settlement.phase == .refunded)
        #expect(settlement.refunded == F.usd(26_000))
        #expect(
            Self.run(&settlement, .startRefund(amount: F.usd(100_001)))
                == .reject(.refundAboveCaptured(refundable: F.usd(100_000))))
        Self.run(&settlement, .startRefund(amount: F.usd(100_000)))
        Self.run(&settlement, .refundSucceeded(attempt: 4))
        #expect(settlement.refunded == F.usd(126_000))
    }

    @Test func cancel_beforeCapture_releasesAnAuthorization_andNotAfter() {
        var due = Self.opened()
        Self.run(&due, .cancel(reason: "  consigned twice  "))
        #expect(due.phase == .cancelled)

        var authorized = Self.opened()
        Self.run(&authorized, .choosePaymentMethod(buyerId: F.alice, method: Self.card))
        Self.run(&authorized, .startAuthorization)
        #expect(Self.run(&authorized, .cancel(reason: "withdrawn")) == .reject(.paymentInFlight))
        Self.run(&authorized, .authorizationSucceeded(attempt: 1, intent: Self.intent))
        Self.run(&authorized, .cancel(reason: "withdrawn"))
        #expect(authorized.inFlight?.idempotencyKey == "settle:lot-42:2:cancel")
        Self.run(&authorized, .cancelSucceeded(attempt: 2, reason: "withdrawn"))
        #expect(authorized.phase == .cancelled)

        var paid = Self.paid()
        #expect(Self.run(&paid, .cancel(reason: "too late")) == .reject(.wrongPhase(.settled)))
    }

    @Test func aRefusedCapture_sendsTheBuyerBackToPaying() {
        var settlement = Self.opened()
        Self.run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: Self.card))
        Self.run(&settlement, .startAuthorization)
        Self.run(&settlement, .authorizationSucceeded(attempt: 1, intent: Self.intent))
        Self.run(&settlement, .startCapture)
        #expect(Self.run(&settlement, .callFailed(attempt: 1, reason: "stale")) == .unchanged)
        Self.run(&settlement, .callFailed(attempt: 2, reason: "authorization_expired"))
        #expect(settlement.phase == .declined)
        #expect(settlement.inFlight == nil)
        #expect(settlement.captured == nil)
        Self.run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: Self.otherCard))
        #expect(settlement.nextCommand(now: Self.t0) == .startAuthorization)
    }

    static func paid() -> Settlement {
        var settlement = opened()
        run(&settlement, .choosePaymentMethod(buyerId: F.alice, method: card))
        run(&settlement, .startAuthorization)
        run(&settlement, .authorizationSucceeded(attempt: 1, intent: intent))
        run(&settlement, .startCapture)
        run(&settlement, .captureSucceeded(attempt: 2, amount: F.usd(126_000)))
        return settlement
    }

    // MARK: - Second-chance price

    @Test func secondChancePrice_isTheCloseWithoutTheDefaultersBids() {
        var auction = F.created(F.terms(starting: 1_000, reserve: 2_000))
        var log: [AuctionEvent] = []
        func bid(_ id: String, _ who: UserID, _ cents: Int64, at seconds: Int64) {
            let decision = auction.decide(F.bid(id, who, cents), now: F.opensAt.advanced(by: .seconds(seconds)))
            guard case .accept(let events) = decision else { return }
            try! auction.apply(contentsOf: events)
            log += events
        }
        log.insert(
            .created(AuctionCreated(terms: auction.running.terms, at: Timestamp(millisecondsSinceEpoch: 0))), at: 0)
        let dave = UserID(rawValue: "dave")!
        bid("b0", dave, 1_500, at: 5)
        bid("b1", F.bob, 3_000, at: 10)
        bid("b2", F.carol, 2_500, at: 20)
        bid("b3", F.alice, 9_000, at: 30)
        auction.mustApply(auction.decide(.close, now: auction.running.endsAt))
        guard case .closed(.sold(let winner, _, let price)) = auction.running.status else {
            Issue.record("not sold")
            return
        }
        #expect(winner == F.alice)
        #expect(price == F.usd(3_100))
        // Without Alice: Bob's 3,000 against Carol's 2,500 — one increment above hers.
        let runnerUp = SecondChance.runnerUp(in: log, excluding: [F.alice])
        #expect(runnerUp?.bidderId == F.bob)
        #expect(runnerUp?.price == F.usd(2_600))
        // Without Alice and Bob: Carol alone above the reserve pays the reserve.
        let third = SecondChance.runnerUp(in: log, excluding: [F.alice, F.bob])
        #expect(third?.bidderId == F.carol)
        #expect(third?.price == F.usd(2_000))
        // Only Dave left, whose 1,500 is below the reserve: nobody gets an offer.
        #expect(SecondChance.runnerUp(in: log, excluding: [F.alice, F.bob, F.carol]) == nil)
    }

    // MARK: - Random paths

    /// One random step: a command number and how much time passes first.
    struct Step: Sendable, CustomStringConvertible {
        var command: Int
        var value: Int64
        var delaySeconds: Int64
        var description: String { "(\(command),\(value),\(delaySeconds))" }
    }

    static let steps = zip(Gen.int(in: 0...16), Gen.int64(in: 0...200_000), Gen.int64(in: 0...100_000))
        .map { Step(command: $0, value: $1, delaySeconds: $2) }.array(of: 0...60)

    static func command(_ step: Step, on settlement: Settlement) -> SettlementCommand {
        let attempt = settlement.inFlight?.attempt ?? settlement.attempts
        let buyer = step.value % 3 == 0 ? F.bob : (settlement.buyerId ?? F.alice)
        switch step.command {
        case 0: return .choosePaymentMethod(buyerId: buyer, method: step.value % 2 == 0 ? card : otherCard)
        case 1: return .startAuthorization
        case 2: return .authorizationSucceeded(attempt: attempt - Int(step.value % 2), intent: intent)
        case 3: return .authorizationDeclined(attempt: attempt, reason: "card_declined")
        case 4: return .startCapture
        case 5:
            let total = settlement.invoice?.total ?? F.usd(1)
            let amount = step.value % 4 == 0 ? F.usd(step.value + 1) : total
            return .captureSucceeded(attempt: attempt, amount: amount)
        case 6: return .remind
        case 7: return .declareDefault
        case 8:
            let offer = SecondChanceOffer(
                bidderId: step.value % 2 == 0 ? F.carol : F.alice, price: F.usd(1 + step.value % 90_000),
                expiresAt: t0.advanced(by: .seconds(step.value * 10)))
            return .offerSecondChance(offer: step.value % 5 == 0 ? nil : offer)
        case 9:
            return .answerSecondChance(
                bidderId: settlement.offer?.bidderId ?? buyer, accept: step.value % 3 != 0)
        case 10: return .expireSecondChance
        case 11: return .startRefund(amount: F.usd(1 + step.value))
        case 12: return .refundSucceeded(attempt: attempt)
        case 13: return .cancel(reason: step.value % 7 == 0 ? " " : "admin")
        case 14: return .cancelSucceeded(attempt: attempt, reason: "admin")
        case 15: return .callFailed(attempt: attempt, reason: "authorization_expired")
        default: return settlement.nextCommand(now: t0.advanced(by: .seconds(step.value))) ?? .remind
        }
    }

    @Test func randomPaths_keepEveryInvariant_andAllEndFinished() async {
        await offThePool {
            await propertyCheck(count: 3_000, input: Self.steps) { steps in
                var settlement = Settlement(auctionId: F.auctionId)
                guard
                    case .accept(let opening) = settlement.decide(
                        .open(buyerId: F.alice, hammer: F.usd(100_000)), fees: Self.fees, now: Self.t0)
                else { return }
                try! settlement.apply(contentsOf: opening)
                var log = opening
                var now = Self.t0
                var capturesByRound: [Int: Int] = [:]
                var keys: [String: ProviderCall] = [:]
                for step in steps {
                    now = now.advanced(by: .seconds(step.delaySeconds))
                    let before = settlement
                    let decision = settlement.decide(Self.command(step, on: settlement), fees: Self.fees, now: now)
                    guard case .accept(let events) = decision else {
                        #expect(settlement == before)
                        continue
                    }
                    for event in events {
                        do {
                            try settlement.apply(event)
                        } catch {
                            Issue.record("an accepted event does not apply: \(error) after \(log)")
                            return
                        }
                        log.append(event)
                        if case .captured = event { capturesByRound[settlement.round, default: 0] += 1 }
                        if case .callStarted(let call, _) = event {
                            #expect(keys[call.idempotencyKey] == nil, "key \(call.idempotencyKey) used twice")
                            keys[call.idempotencyKey] = call
                        }
                    }
                    Self.checkAmounts(settlement)
                }
                #expect(capturesByRound.values.allSatisfy { $0 <= 1 }, "\(capturesByRound)")
                #expect((try? Settlement.replay(auctionId: F.auctionId, events: log)) == settlement)
                // Left alone with a provider that answers and nobody else acting, every path finishes.
                Self.finish(&settlement, from: now)
                #expect(settlement.phase?.isFinished == true, "stuck in \(settlement.phase.map(\.rawValue) ?? "-")")
            }
        }
    }

    static func checkAmounts(_ settlement: Settlement) {
        if let captured = settlement.captured {
            #expect(captured == settlement.invoice?.total)
            #expect((settlement.refunded?.minorUnits ?? 0) <= captured.minorUnits)
        } else {
            #expect(settlement.refunded == nil)
        }
    }

    /// Plays the owner: resolves the call in flight (success), runs what falls due, moves the
    /// clock past deadlines; runner-ups never answer.
    static func finish(_ settlement: inout Settlement, from start: Timestamp) {
        var now = start
        for _ in 0..<20 {
            if settlement.phase?.isFinished == true { return }
            if let call = settlement.inFlight {
                switch call.operation {
                case .authorize:
                    run(&settlement, .authorizationSucceeded(attempt: call.attempt, intent: intent), at: now)
                case .capture: run(&settlement, .captureSucceeded(attempt: call.attempt, amount: call.amount!), at: now)
                case .refund: run(&settlement, .refundSucceeded(attempt: call.attempt), at: now)
                case .cancel: run(&settlement, .cancelSucceeded(attempt: call.attempt, reason: "admin"), at: now)
                }
                continue
            }
            if let next = settlement.nextCommand(now: now) {
                run(&settlement, next, at: now)
            } else if settlement.needsSecondChanceOffer {
                run(&settlement, .offerSecondChance(offer: nil), at: now)
            } else {
                now = now.advanced(by: .seconds(30 * 86_400))
            }
        }
    }
}

/// Settlement in the auction's own log: it opens with the hammer, runs through `Auction.decide`,
/// replays with the log, and is refused for lots that were not sold.
@Suite struct SettlementInTheLogTests {
    typealias F = Fixture

    static func sold(buyNow: Bool = false) -> (Auction, [AuctionEvent]) {
        var auction = Auction(id: F.auctionId)
        var log: [AuctionEvent] = []
        func run(_ command: AuctionCommand, at now: Timestamp) {
            guard case .accept(let events) = auction.decide(command, now: now) else { return }
            try! auction.apply(contentsOf: events)
            log += events
        }
        run(.create(F.terms(starting: 1_000, buyNow: 50_000)), at: Timestamp(millisecondsSinceEpoch: 0))
        if buyNow {
            run(
                .buyNow(BuyNow(bidId: BidID(rawValue: "b1")!, bidderId: F.alice, price: F.usd(50_000))),
                at: F.duringSale)
        } else {
            run(F.bid("b1", F.alice, 5_000), at: F.duringSale)
            run(.close, at: F.closesAt)
        }
        return (auction, log)
    }

    @Test func theHammer_opensTheSettlement_inTheSameBatch() {
        let (auction, log) = Self.sold()
        guard case .closed = log[log.count - 2],
            case .settlement(.opened(1, let buyer, let invoice, let dueBy, _, _)) = log.last
        else {
            Issue.record("closed then opened expected, got \(log.suffix(2))")
            return
        }
        #expect(buyer == F.alice)
        #expect(invoice.hammer == F.usd(1_000), "alone: the starting price")
        #expect(dueBy == F.closesAt.advanced(by: .seconds(3 * 86_400)))
        #expect(auction.state?.settlement?.phase == .due)
        let (bought, boughtLog) = Self.sold(buyNow: true)
        #expect(bought.state?.settlement?.invoice?.hammer == F.usd(50_000))
        #expect(boughtLog.count == 4, "created, bought_now, closed, opened")
    }

    @Test func settlementSteps_runThroughTheAuction_andReplay() {
        var (auction, log) = Self.sold()
        let card = PaymentMethodID(rawValue: "pm_card_visa")!
        let steps: [AuctionCommand] = [
            .settle(.choosePaymentMethod(buyerId: F.alice, method: card)), .settle(.startAuthorization),
        ]
        for step in steps {
            guard case .accept(let events) = auction.decide(step, now: F.closesAt) else {
                Issue.record("\(step) refused")
                return
            }
            try! auction.apply(contentsOf: events)
            log += events
        }
        #expect(auction.state?.settlement?.inFlight?.idempotencyKey == "settle:lot-42:1:authorize")
        #expect(
            auction.decide(.settle(.choosePaymentMethod(buyerId: F.bob, method: card)), now: F.closesAt)
                == .reject(.settlement(.notTheBuyer)))
        #expect(
            auction.decide(.settle(.open(buyerId: F.bob, hammer: F.usd(1))), now: F.closesAt)
                == .reject(.invalidCommand("a settlement opens when the lot is sold")))
        let replayed = try! Auction.replay(id: F.auctionId, events: log)
        #expect(replayed.state == auction.state)
        // Snapshots keep it too.
        let coded = try! JSONDecoder().decode(Auction.self, from: JSONEncoder().encode(auction))
        #expect(coded.state?.settlement == auction.state?.settlement)
    }

    @Test func anUnsoldLot_hasNoSettlement() {
        var auction = F.created(F.terms(starting: 1_000, reserve: 9_000))
        auction.handle(F.bid("b1", F.alice, 5_000))
        auction.handle(.close, at: F.closesAt)
        #expect(auction.state?.settlement == nil)
        #expect(
            auction.decide(.settle(.startAuthorization), now: F.closesAt) == .reject(.settlement(.notOpen)))
        var state = auction.state
        let forged = AuctionEvent.settlement(.reminded(at: F.closesAt))
        #expect(throws: EventApplicationError.self) {
            try AuctionState.advance(&state, with: forged, auction: F.auctionId, seq: auction.seq + 1)
        }
    }
}
