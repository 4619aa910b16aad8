import AuctionCore
import ChaosCheck
import Foundation
import Storage
import Testing

/// The settlement checks against a made-up ledger and log: an honest run passes; a double capture,
/// a capture that does not match, and a wedged settlement are each reported.
@Suite struct SettlementCheckTests {
    static let lot = AuctionID(rawValue: "lot-paid")!
    static let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    /// A lot sold to alice at 1,000.00 EUR and paid: its log, and the provider's two movements.
    static func paidLot() -> (log: [StoredEvent], ledger: [SettlementCheck.Movement]) {
        var auction = Auction(id: lot)
        var log: [StoredEvent] = []
        func run(_ command: AuctionCommand, at now: Timestamp) {
            guard case .accept(let events) = auction.decide(command, now: now) else {
                Issue.record("\(command) refused")
                return
            }
            for event in events {
                try! auction.apply(event)
                log.append(StoredEvent(auction: lot, seq: auction.seq, epoch: Epoch(1), event: event))
            }
        }
        let alice = UserID(rawValue: "alice")!
        run(
            .create(
                AuctionTerms(
                    auctionId: lot, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                    startingPrice: Money(minorUnits: 100_000, currency: .eur), opensAt: start,
                    closesAt: start.advanced(by: .seconds(60)), extensionWindow: .zero)), at: start)
        run(
            .placeBid(
                PlaceBid(
                    bidId: BidID(rawValue: "a1")!, bidderId: alice, maximum: Money(minorUnits: 200_000, currency: .eur))
            ),
            at: start.advanced(by: .seconds(1)))
        let closed = start.advanced(by: .seconds(60))
        run(.close, at: closed)
        run(
            .settle(.choosePaymentMethod(buyerId: alice, method: PaymentMethodID(rawValue: "pm_card_visa")!)),
            at: closed)
        run(.settle(.startAuthorization), at: closed)
        run(.settle(.authorizationSucceeded(attempt: 1, intent: PaymentIntentID(rawValue: "pi_1")!)), at: closed)
        run(.settle(.startCapture), at: closed)
        run(.settle(.captureSucceeded(attempt: 2, amount: Money(minorUnits: 126_000, currency: .eur))), at: closed)
        let ledger = [
            SettlementCheck.Movement(
                kind: .authorization, auction: lot, intent: "pi_1", amount: 126_000,
                idempotencyKey: "settle:lot-paid:1:authorize"),
            SettlementCheck.Movement(
                kind: .capture, auction: lot, intent: "pi_1", amount: 126_000,
                idempotencyKey: "settle:lot-paid:2:capture"),
        ]
        return (log, ledger)
    }

    static let later = start.advanced(by: .seconds(120))

    @Test func anHonestRun_passes() {
        let (log, ledger) = Self.paidLot()
        let report = SettlementCheck.check(ledger: ledger, logs: [Self.lot: log], keyConflicts: 0, at: Self.later)
        #expect(report.passed, "\(report.violations)")
        #expect(report.soldLots == 1 && report.settled == 1 && report.captures == 1)
        #expect(report.summary.contains("PASS"))
    }

    @Test func aSecondCapture_aWrongAmount_andAReusedKey_areReported() {
        let (log, ledger) = Self.paidLot()
        var twice = ledger
        twice.append(
            .init(
                kind: .capture, auction: Self.lot, intent: "pi_2", amount: 126_000,
                idempotencyKey: "settle:lot-paid:2:capture~7"))
        let doubled = SettlementCheck.check(ledger: twice, logs: [Self.lot: log], keyConflicts: 0, at: Self.later)
        #expect(doubled.violations.contains { $0.contains("captured 2 times") }, "\(doubled.violations)")
        var wrong = ledger
        wrong[1].amount = 125_999
        let mismatched = SettlementCheck.check(ledger: wrong, logs: [Self.lot: log], keyConflicts: 0, at: Self.later)
        #expect(mismatched.violations.contains { $0.contains("the provider 125999") }, "\(mismatched.violations)")
        let conflicts = SettlementCheck.check(ledger: ledger, logs: [Self.lot: log], keyConflicts: 2, at: Self.later)
        #expect(!conflicts.passed)
        var held = ledger
        held.append(
            .init(
                kind: .authorization, auction: Self.lot, intent: "pi_9", amount: 126_000,
                idempotencyKey: "settle:lot-paid:1:authorize~3"))
        let dangling = SettlementCheck.check(ledger: held, logs: [Self.lot: log], keyConflicts: 0, at: Self.later)
        #expect(dangling.violations.contains { $0.contains("unknown to the settlement") }, "\(dangling.violations)")
    }

    @Test func aSettlementLeftDueLongAfterItsDeadline_isWedged() {
        let (log, _) = Self.paidLot()
        let unpaid = Array(log.prefix { if case .settlement(.paymentMethodChosen) = $0.event { false } else { true } })
        let waiting = SettlementCheck.check(ledger: [], logs: [Self.lot: unpaid], keyConflicts: 0, at: Self.later)
        #expect(waiting.passed, "within the deadline it waits: \(waiting.violations)")
        #expect(waiting.waiting == ["due, deadline not reached": 1])
        let longAfter = Self.start.advanced(by: .seconds(4 * 86_400))
        let wedged = SettlementCheck.check(ledger: [], logs: [Self.lot: unpaid], keyConflicts: 0, at: longAfter)
        #expect(wedged.violations.contains { $0.contains("30 s after its deadline") }, "\(wedged.violations)")
    }
}
