import AuctionCore
import AuctionRuntime
import Logging
import Node
import Storage
import TestSupport
import Testing

/// The owner archives its finished lots (here unsold and cancelled; sold lots wait for their
/// settlement — see `AuctionRecordTests`), once per log length.
@Suite(.serialized) struct ArchiverTests {
    @Test func finishedLots_areArchived_once_andRunningOnesAreNot() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 1, store: store)
            defer { Task { await cluster.stop() } }
            try await cluster.converged()
            let node = cluster.nodes[0].node
            let now = SystemClock().now()
            func terms(_ id: AuctionID, closingIn seconds: Int64) -> AuctionTerms {
                AuctionTerms(
                    auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot \(id)",
                    startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
                    closesAt: now.advanced(by: .seconds(seconds)), extensionWindow: .zero)
            }
            let quick = AuctionID(rawValue: "ar-quick")!
            let cancelled = AuctionID(rawValue: "ar-cancelled")!
            let running = AuctionID(rawValue: "ar-running")!
            #expect(await node.submit(.create(terms(quick, closingIn: 1)), to: quick).value != nil)
            #expect(await node.submit(.create(terms(cancelled, closingIn: 3_600)), to: cancelled).value != nil)
            #expect(await node.submit(.create(terms(running, closingIn: 3_600)), to: running).value != nil)
            #expect(await node.submit(.cancel(reason: "withdrawn"), to: cancelled).value != nil)
            var logger = Logger(label: "test.archiver")
            logger.logLevel = .error
            let archiver = AuctionArchiver(node: node, store: store, users: store, clock: SystemClock(), logger: logger)
            // The quick lot closes (unsold: no bids) by its owner's timer; the read model sees it.
            try await eventually("both finished lots are archived") {
                _ = await archiver.archiveFinished()
                return try await store.archivedSeqs(of: [quick, cancelled, running]).count == 2
            }
            let unsold = try #require(try await store.archivedAuction(quick))
            #expect(unsold.result == .unsold && unsold.reason == "no_bids")
            #expect(try await store.archivedAuction(cancelled)?.result == .cancelled)
            #expect(try await store.archivedAuction(running) == nil)
            #expect(await archiver.archiveFinished() == 0, "nothing new: nothing written again")
            let report = try await store.lotReport(ArchiveQuery())
            #expect(report.first?.lots == 2 && report.first?.unsold == 1 && report.first?.cancelled == 1)
            await cluster.stop()
        }
    }
}
