import AuctionCore
import Foundation
import PropertyBased
import TestSupport
import Testing

/// Random bid sequences against the invariants of DESIGN.md (2 and 5) and replay.
@Suite struct AuctionPropertyTests {
    typealias F = Fixture

    /// One step of a random script: who acts, with what amount, how much later, and how.
    struct Step: Sendable, CustomStringConvertible {
        var actor: Int  // 0 is the seller, 1...4 are bidders
        var cents: Int64
        var delayMs: Int64
        var action: Int  // 0: resubmit an earlier bid id, 1: buy now, 2: wrong currency, else: bid
        var description: String { "(\(actor),\(cents),\(delayMs),\(action))" }
    }

    struct Script: Sendable, CustomStringConvertible {
        var starting: Int64
        var reserve: Int64?
        var buyNow: Int64?
        var windowSeconds: Int64
        var steps: [Step]
        var description: String {
            "start=\(starting) reserve=\(reserve.map(String.init) ?? "-") buyNow=\(buyNow.map(String.init) ?? "-") "
                + "window=\(windowSeconds)s steps=\(steps)"
        }
    }

    static let step = zip(
        Gen.int(in: 0...4), Gen.int64(in: -50...300_000), Gen.int64(in: 0...600_000), Gen.int(in: 0...12)
    ).map { Step(actor: $0, cents: $1, delayMs: $2, action: $3) }

    static let script = zip(
        Gen.int64(in: 1...20_000), Gen.int64(in: 0...150_000).optional, Gen.int64(in: 0...400_000).optional,
        zip(Gen.int64(in: 0...300), step.array(of: 1...80))
    ).map { starting, reserve, buyNow, rest in
        Script(
            starting: starting, reserve: reserve.map { starting + $0 },
            buyNow: buyNow.map { starting + (reserve ?? 0) + 1 + $0 }, windowSeconds: rest.0, steps: rest.1)
    }

    static let bidders = [F.seller, F.alice, F.bob, F.carol, UserID(rawValue: "dave")!]

    @Test func randomSequences_keepEveryInvariant() async {
        await offThePool {
            await propertyCheck(count: 3_000, input: Self.script) { script in
                Self.run(script)
            }
        }
    }

    /// Plays a script, checking the invariants after every step; returns the live auction and its log.
    @discardableResult
    static func run(_ script: Script) -> (Auction, [AuctionEvent]) {
        let terms = AuctionTerms(
            auctionId: F.auctionId, sellerId: F.seller, title: "Lot", startingPrice: F.usd(script.starting),
            reservePrice: script.reserve.map(F.usd), buyNowPrice: script.buyNow.map(F.usd), opensAt: F.opensAt,
            closesAt: F.closesAt, extensionWindow: .seconds(script.windowSeconds))
        var auction = Auction(id: F.auctionId)
        var log: [AuctionEvent] = []
        var now = F.opensAt
        func record(_ decision: Auction.Decision) {
            if case .accept(let events) = decision {
                try! auction.apply(contentsOf: events)
                log += events
            }
        }
        record(auction.decide(.create(terms), now: Timestamp(millisecondsSinceEpoch: 0)))
        // Every accepted bid, in acceptance order: (bidder, maximum, bid id).
        var accepted: [(UserID, Money, BidID)] = []
        var counter = 0
        // The leader's maximum right after the last bid by someone other than the then leader.
        var capAtLastChallenge = terms.startingPrice
        for step in script.steps {
            now = now.advanced(by: .milliseconds(step.delayMs))
            let before = auction
            let bidder = bidders[step.actor]
            counter += 1
            let bidId = BidID(rawValue: "bid-\(counter)")!
            switch step.action {
            case 0:
                guard let earlier = accepted.randomElement() else { continue }
                let resubmit = AuctionCommand.placeBid(
                    PlaceBid(bidId: earlier.2, bidderId: earlier.0, maximum: earlier.1))
                let decision = auction.decide(resubmit, now: now)
                let receipt = auction.ledger[earlier.2]!
                if receipt.outcome == .boughtNow {
                    #expect(decision == .reject(.bidIdConflict(earlier.2)) || decision == .alreadyAccepted(receipt))
                } else {
                    #expect(decision == .alreadyAccepted(receipt), "resubmission of \(earlier.2)")
                }
                continue
            case 1:
                let decision = auction.decide(
                    .buyNow(BuyNow(bidId: bidId, bidderId: bidder, price: F.usd(script.buyNow ?? script.starting))),
                    now: now)
                record(decision)
                if case .accept = decision {
                    accepted.append((bidder, F.usd(script.buyNow!), bidId))
                    #expect(
                        auction.state?.phase(at: now)
                            == .closed(.sold(winnerId: bidder, bidId: bidId, price: F.usd(script.buyNow!))))
                } else {
                    #expect(auction == before)
                }
                continue
            case 2:
                let foreign = PlaceBid(
                    bidId: bidId, bidderId: bidder, maximum: Money(minorUnits: step.cents, currency: .eur))
                #expect(auction.decide(.placeBid(foreign), now: now) == .reject(.currencyMismatch(expected: .usd)))
                continue
            default:
                let decision = auction.decide(
                    .placeBid(PlaceBid(bidId: bidId, bidderId: bidder, maximum: F.usd(step.cents))), now: now)
                record(decision)
                guard case .accept = decision else {
                    #expect(auction == before, "a rejection changed the state")
                    continue
                }
                accepted.append((bidder, F.usd(step.cents), bidId))
            }
            if before.state?.leader?.bidderId != bidder { capAtLastChallenge = auction.state!.leader!.maximum }
            checkInvariants(
                before: before.state!, after: auction.state!, accepted: accepted,
                capAtLastChallenge: capAtLastChallenge, terms: terms)
        }
        if auction.state?.phase(at: auction.state!.endsAt) == .ended {
            record(auction.decide(.close, now: auction.state!.endsAt))
            #expect(auction.decide(.close, now: auction.state!.endsAt) == .reject(.auctionClosed))
        }
        // Replay equals live state, also through a JSON snapshot taken half-way.
        let replayed = try! Auction.replay(id: F.auctionId, events: log)
        #expect(replayed == auction)
        let half = log.count / 2
        let early = try! Auction.replay(id: F.auctionId, events: log[..<half])
        var restored = try! JSONDecoder().decode(Auction.self, from: JSONEncoder().encode(early))
        try! restored.apply(contentsOf: log[half...])
        #expect(restored == auction)
        return (auction, log)
    }

    static func checkInvariants(
        before: AuctionState, after: AuctionState, accepted: [(UserID, Money, BidID)], capAtLastChallenge: Money,
        terms: AuctionTerms
    ) {
        guard let leader = after.leader else {
            Issue.record("an accepted bid left no leader")
            return
        }
        // The visible price never decreases and rises with every change of leader.
        #expect(after.price >= before.price)
        if let previous = before.leader, previous.bidderId != leader.bidderId {
            #expect(after.price > before.price, "leader changed without a price rise")
        }
        // No auto-bid above a maximum.
        #expect(after.price <= leader.maximum)
        // The leader holds the highest maximum, the earliest of equal maxima.
        let highest = accepted.map(\.1).max()!
        let earliest = accepted.first { $0.1 == highest }!
        #expect(leader.maximum == highest)
        #expect(leader.bidId == earliest.2)
        // eBay's price: one increment over the best other bidder's maximum, capped by the maximum the
        // leader had when last challenged (raising one's own maximum does not raise the price), and
        // raised to the reserve once the leader's maximum reaches it.
        let others = accepted.filter { $0.0 != leader.bidderId }.map(\.1).max()
        var expected = terms.startingPrice
        if let runnerUp = others {
            let stepUp = Money(
                minorUnits: runnerUp.minorUnits + terms.increments.increment(at: runnerUp.minorUnits), currency: .usd)
            expected = max(expected, min(capAtLastChallenge, stepUp))
        }
        if let reserve = terms.reservePrice, leader.maximum >= reserve { expected = max(expected, reserve) }
        #expect(after.price == expected)
    }
}
