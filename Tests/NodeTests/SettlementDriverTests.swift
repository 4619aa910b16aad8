import AsyncHTTPClient
import AuctionCore
import AuctionRuntime
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Node
import PaymentSandbox
import Payments
import Storage
import TestSupport
import Testing

/// Three in-process nodes settle sold lots against the sandbox provider over real HTTP, with a
/// driver on every node: money moves once per lot through the provider's faults, and a default
/// leads to a second chance that is its own settlement.
@Suite(.serialized) struct SettlementDriverTests {
    static let seller = UserID(rawValue: "seller")!
    static let visa = PaymentMethodID(rawValue: "pm_card_visa")!

    /// A cluster with a settlement driver per node, talking to a sandbox on a free port.
    static func withSettlingCluster(
        faults: SandboxFaults = .init(), callTimeout: Duration = .seconds(5),
        _ body: @Sendable (LocalCluster, SandboxProvider, SQLiteEventStore) async throws -> Void
    ) async throws {
        try await withSQLiteStore { store, _ in
            let sandbox = SandboxProvider(secretKey: "sk_test_cluster", faults: faults, seed: 11)
            let app = Application(router: sandbox.router())
            try await app.test(.live) { client in
                let port = try #require(client.port)
                let http = HTTPClient(eventLoopGroupProvider: .singleton)
                let cluster = try await LocalCluster.start(count: 3, store: store)
                var logger = Logger(label: "test.settlement")
                logger.logLevel = .error
                var settings = SettlementDriver.Settings()
                settings.pollInterval = .milliseconds(50)
                settings.retryDelay = .milliseconds(100)
                settings.maximumRetryDelay = .milliseconds(800)
                settings.breaker.openFor = .milliseconds(500)
                settings.breaker.maximumOpenFor = .seconds(1)
                var drivers: [Task<Void, Never>] = []
                for running in cluster.nodes {
                    let provider = StripeShapedClient(
                        baseURL: "http://127.0.0.1:\(port)", secretKey: "sk_test_cluster", http: http,
                        timeout: callTimeout)
                    let driver = SettlementDriver(
                        node: running.node, provider: provider, store: store, users: store, clock: SystemClock(),
                        logger: logger, settings: settings)
                    drivers.append(Task { await driver.run() })
                }
                do {
                    try await cluster.converged()
                    try await body(cluster, sandbox, store)
                } catch {
                    drivers.forEach { $0.cancel() }
                    await cluster.stop()
                    try? await http.shutdown()
                    throw error
                }
                drivers.forEach { $0.cancel() }
                await cluster.stop()
                try await http.shutdown()
            }
        }
    }

    /// Creates a lot that ends in 5 s (time for its bids to land first on a machine busy with the
    /// whole suite) and places `bids` (bidder, maximum in cents) on it.
    static func sell(
        _ id: AuctionID, bids: [(UserID, Int64)], fees: FeeSchedule = .standard, in cluster: LocalCluster
    ) async throws {
        let now = SystemClock().now()
        let terms = AuctionTerms(
            auctionId: id, sellerId: seller, title: "Lot \(id)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur),
            opensAt: now, closesAt: now.advanced(by: .seconds(5)), extensionWindow: .zero, fees: fees)
        #expect(await cluster.nodes[0].node.submit(.create(terms), to: id).value != nil)
        for (index, (bidder, cents)) in bids.enumerated() {
            let bid = PlaceBid(
                bidId: BidID(rawValue: "\(id)-b\(index)")!, bidderId: bidder,
                maximum: Money(minorUnits: cents, currency: .eur))
            #expect(await cluster.nodes[index % 3].node.submit(.placeBid(bid), to: id).value != nil)
        }
    }

    static func settlement(_ id: AuctionID, in cluster: LocalCluster) -> Settlement? {
        cluster.nodes[0].node.readModel.settlement(of: id)
    }

    @Test func soldLots_areCapturedOnce_throughProviderFaults() async throws {
        var faults = SandboxFaults()
        faults.errorBeforeRate = 0.2
        faults.errorAfterRate = 0.2
        faults.timeoutAfterChargeRate = 0.2
        faults.hangMilliseconds = 1_000
        try await Self.withSettlingCluster(faults: faults, callTimeout: .milliseconds(400)) { cluster, sandbox, _ in
            let lots = (0..<6).map { AuctionID(rawValue: "lot-pay-\($0)")! }
            for (index, lot) in lots.enumerated() {
                try await Self.sell(
                    lot, bids: [(UserID(rawValue: "buyer-\(index)")!, 5_000 + Int64(index) * 100)], in: cluster)
            }
            try await eventually("every lot sold") {
                lots.allSatisfy { Self.settlement($0, in: cluster)?.phase == .due }
            }
            for (index, lot) in lots.enumerated() {
                let chosen = await cluster.nodes[(index + 1) % 3].node.submit(
                    .settle(.choosePaymentMethod(buyerId: UserID(rawValue: "buyer-\(index)")!, method: Self.visa)),
                    to: lot)
                #expect(chosen.value != nil, "\(chosen)")
            }
            try await eventually("every lot settled") {
                lots.allSatisfy { Self.settlement($0, in: cluster)?.phase == .settled }
            }
            let ledger = sandbox.ledger
            for lot in lots {
                let entries = ledger.filter { $0.metadata["auction"] == lot.rawValue }
                #expect(entries.filter { $0.kind == .authorization }.count == 1, "\(lot): \(entries)")
                let captures = entries.filter { $0.kind == .capture }
                #expect(captures.count == 1, "\(lot): \(entries)")
                #expect(captures.first?.amount == Self.settlement(lot, in: cluster)?.invoice?.total.minorUnits)
            }
            let injected = sandbox.faultsInjected
            #expect(
                injected["error_after", default: 0] > 0 && injected["timeout_after_charge", default: 0] > 0,
                "\(injected)")
            let keys = ledger.compactMap(\.idempotencyKey)
            #expect(Set(keys).count == keys.count, "every money movement has its own key")
        }
    }

    /// Saves `method` as the default of a new user `id`.
    static func customer(_ id: UserID, saves method: String?, in store: SQLiteEventStore) async throws {
        try await store.createUser(
            StoredUser(
                id: id, username: id.rawValue, passwordHash: "-", roles: ["bidder"],
                createdAt: Timestamp(millisecondsSinceEpoch: 0)))
        guard let method else { return }
        try await store.savePaymentMethod(
            SavedPaymentMethod(
                id: PaymentMethodID(rawValue: method)!, brand: "visa", last4: "4242",
                savedAt: Timestamp(millisecondsSinceEpoch: 1)),
            for: id)
    }

    /// Nobody calls the API after the hammer: the winner's saved card is authorized and captured
    /// by the lot's owner, and the seller's payout recorded.
    @Test func aSavedCard_isCharged_withNoActionFromTheBuyer() async throws {
        try await Self.withSettlingCluster { cluster, sandbox, store in
            let carol = UserID(rawValue: "carol")!
            try await Self.customer(carol, saves: "pm_card_visa", in: store)
            let lot = AuctionID(rawValue: "lot-saved-card")!
            try await Self.sell(lot, bids: [(carol, 4_000)], in: cluster)
            try await eventually("carol's saved card pays") {
                Self.settlement(lot, in: cluster)?.phase == .settled
            }
            let settled = try #require(Self.settlement(lot, in: cluster))
            #expect(settled.paymentMethod == Self.visa)
            #expect(settled.captured == settled.invoice?.total)
            #expect(sandbox.ledger.map(\.kind) == [.authorization, .capture])
            let log = try await cluster.store.events(of: lot, after: 0, limit: 50).map(\.event)
            #expect(log.contains { if case .settlement(.payoutRecorded) = $0 { true } else { false } })
        }
    }

    /// The winner's saved card declines and the deadline passes: the winner is blocked from bidding
    /// (once, whatever the failovers), the runner-up is offered the lot and their own saved card
    /// pays for it as round 2.
    @Test func aDecliningSavedCard_blocksTheBuyer_andTheSecondChanceIsPaidWithTheRunnerUpsCard() async throws {
        let fees = FeeSchedule(
            buyerPremium: FeeSchedule.standard.buyerPremium, sellerCommissionBasisPoints: 1_000,
            paymentDeadline: .seconds(2), secondChanceWindow: .seconds(30))
        try await Self.withSettlingCluster { cluster, sandbox, store in
            let lot = AuctionID(rawValue: "lot-second-chance")!
            let alice = UserID(rawValue: "alice")!
            let bob = UserID(rawValue: "bob")!
            try await Self.customer(alice, saves: "pm_card_chargeDeclined", in: store)
            try await Self.customer(bob, saves: "pm_card_visa", in: store)
            try await Self.sell(lot, bids: [(bob, 3_000), (alice, 9_000)], fees: fees, in: cluster)
            try await eventually("the card is declined, the deadline passes, bob gets an offer") {
                Self.settlement(lot, in: cluster)?.phase == .secondChanceOffered
            }
            #expect(try await store.user(id: alice)?.blockedFromBidding == true)
            #expect(try await store.biddingBlocks(of: alice).map(\.auction) == [lot])
            #expect(try await store.user(id: bob)?.blockedFromBidding == false)
            let offered = try #require(Self.settlement(lot, in: cluster)?.offer)
            #expect(offered.bidderId == bob)
            #expect(offered.price == Money(minorUnits: 1_000, currency: .eur), "alone, bob pays the starting price")
            let accepted = await cluster.nodes[2].node.submit(
                .settle(.answerSecondChance(bidderId: bob, accept: true)), to: lot)
            #expect(accepted.value != nil, "\(accepted)")
            try await eventually("bob's round settles with his saved card") {
                Self.settlement(lot, in: cluster)?.phase == .settled
            }
            let settled = try #require(Self.settlement(lot, in: cluster))
            #expect(settled.round == 2)
            #expect(settled.defaulters == [alice])
            #expect(settled.captured == Money(minorUnits: 1_260, currency: .eur))
            #expect(sandbox.ledger.map(\.kind) == [.decline, .authorization, .capture])
        }
    }

    @Test func anUnansweredOffer_expires_andTheLotIsUnsold() async throws {
        let fees = FeeSchedule(
            buyerPremium: FeeSchedule.standard.buyerPremium, sellerCommissionBasisPoints: 1_000,
            paymentDeadline: .seconds(1), secondChanceWindow: .seconds(1))
        try await Self.withSettlingCluster { cluster, sandbox, _ in
            let lot = AuctionID(rawValue: "lot-expiring-offer")!
            try await Self.sell(
                lot, bids: [(UserID(rawValue: "bob")!, 3_000), (UserID(rawValue: "alice")!, 9_000)], fees: fees,
                in: cluster)
            try await eventually("alice defaults, bob's offer expires, the lot is unsold") {
                Self.settlement(lot, in: cluster)?.phase == .unsold
            }
            let log = try await cluster.store.events(of: lot, after: 0, limit: 50).map(\.event)
            #expect(log.contains { if case .settlement(.secondChanceExpired) = $0 { true } else { false } })
            #expect(sandbox.ledger.isEmpty)
        }
    }
}
