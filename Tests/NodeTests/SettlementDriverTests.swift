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
        _ body: @Sendable (LocalCluster, SandboxProvider) async throws -> Void
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
                        node: running.node, provider: provider, store: store, clock: SystemClock(), logger: logger,
                        settings: settings)
                    drivers.append(Task { await driver.run() })
                }
                do {
                    try await cluster.converged()
                    try await body(cluster, sandbox)
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

    /// Creates a lot that ends in 3 s and places `bids` (bidder, maximum in cents) on it.
    static func sell(
        _ id: AuctionID, bids: [(UserID, Int64)], fees: FeeSchedule = .standard, in cluster: LocalCluster
    ) async throws {
        let now = SystemClock().now()
        let terms = AuctionTerms(
            auctionId: id, sellerId: seller, title: "Lot \(id)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur),
            opensAt: now, closesAt: now.advanced(by: .seconds(3)), extensionWindow: .zero, fees: fees)
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
        try await Self.withSettlingCluster(faults: faults, callTimeout: .milliseconds(400)) { cluster, sandbox in
            let lots = (0..<6).map { AuctionID(rawValue: "lot-pay-\($0)")! }
            for (index, lot) in lots.enumerated() {
                try await Self.sell(
                    lot, bids: [(UserID(rawValue: "buyer-\(index)")!, 5_000 + Int64(index) * 100)], in: cluster)
            }
            try await eventually("every lot sold", timeout: .seconds(20)) {
                lots.allSatisfy { Self.settlement($0, in: cluster)?.phase == .due }
            }
            for (index, lot) in lots.enumerated() {
                let chosen = await cluster.nodes[(index + 1) % 3].node.submit(
                    .settle(.choosePaymentMethod(buyerId: UserID(rawValue: "buyer-\(index)")!, method: Self.visa)),
                    to: lot)
                #expect(chosen.value != nil, "\(chosen)")
            }
            try await eventually("every lot settled", timeout: .seconds(60)) {
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

    @Test func aDefault_leadsToASecondChance_thatSettlesOnItsOwn() async throws {
        let fees = FeeSchedule(
            buyerPremium: FeeSchedule.standard.buyerPremium, sellerCommissionBasisPoints: 1_000,
            paymentDeadline: .seconds(2), secondChanceWindow: .seconds(30))
        try await Self.withSettlingCluster { cluster, sandbox in
            let lot = AuctionID(rawValue: "lot-second-chance")!
            let alice = UserID(rawValue: "alice")!
            let bob = UserID(rawValue: "bob")!
            try await Self.sell(lot, bids: [(bob, 3_000), (alice, 9_000)], fees: fees, in: cluster)
            try await eventually("sold to alice", timeout: .seconds(20)) {
                Self.settlement(lot, in: cluster)?.phase == .due
            }
            let declining = PaymentMethodID(rawValue: "pm_card_chargeDeclined")!
            _ = await cluster.nodes[1].node.submit(
                .settle(.choosePaymentMethod(buyerId: alice, method: declining)), to: lot)
            try await eventually("the card is declined, the deadline passes, bob gets an offer", timeout: .seconds(30))
            {
                Self.settlement(lot, in: cluster)?.phase == .secondChanceOffered
            }
            let offered = try #require(Self.settlement(lot, in: cluster)?.offer)
            #expect(offered.bidderId == bob)
            #expect(offered.price == Money(minorUnits: 1_000, currency: .eur), "alone, bob pays the starting price")
            let accepted = await cluster.nodes[2].node.submit(
                .settle(.answerSecondChance(bidderId: bob, accept: true)), to: lot)
            #expect(accepted.value != nil, "\(accepted)")
            _ = await cluster.nodes[0].node.submit(
                .settle(.choosePaymentMethod(buyerId: bob, method: Self.visa)), to: lot)
            try await eventually("bob's round settles", timeout: .seconds(30)) {
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
        try await Self.withSettlingCluster { cluster, sandbox in
            let lot = AuctionID(rawValue: "lot-expiring-offer")!
            try await Self.sell(
                lot, bids: [(UserID(rawValue: "bob")!, 3_000), (UserID(rawValue: "alice")!, 9_000)], fees: fees,
                in: cluster)
            try await eventually("alice defaults, bob's offer expires, the lot is unsold", timeout: .seconds(30)) {
                Self.settlement(lot, in: cluster)?.phase == .unsold
            }
            let log = try await cluster.store.events(of: lot, after: 0, limit: 50).map(\.event)
            #expect(log.contains { if case .settlement(.secondChanceExpired) = $0 { true } else { false } })
            #expect(sandbox.ledger.isEmpty)
        }
    }
}
