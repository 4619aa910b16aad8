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
            // Seconds from now, as the owner decides it: on a busy machine the first try may come
            // after its end (refused: "closesAt must be in the future"), so it is made again.
            func createClosingSoon(_ id: AuctionID, in seconds: Int64 = 1) async -> Bool {
                for _ in 0..<20 {
                    let soon = AuctionTerms(
                        auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot \(id)",
                        startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: SystemClock().now(),
                        closesAt: SystemClock().now().advanced(by: .seconds(seconds)), extensionWindow: .zero)
                    if await node.submit(.create(soon), to: id).value != nil { return true }
                }
                return false
            }
            #expect(await createClosingSoon(quick))
            // Cancelled before its end; archived once the end it was planned for has passed (the
            // archiver walks lots by end, so its cost follows the lots that are over).
            #expect(await createClosingSoon(cancelled, in: 5))
            #expect(await node.submit(.create(terms(running, closingIn: 3_600)), to: running).value != nil)
            #expect(await node.submit(.cancel(reason: "withdrawn"), to: cancelled).value != nil)
            var logger = Logger(label: "test.archiver")
            logger.logLevel = .error
            let archiver = AuctionArchiver(node: node, store: store, users: store, clock: SystemClock(), logger: logger)
            // The quick lot closes (unsold: no bids) by its owner's timer; the read model sees it.
            try await eventually("both finished lots are archived") {
                _ = await archiver.archiveFinished()
                return try await store.archivedMarks(of: [quick, cancelled, running]).count == 2
            }
            let unsold = try #require(try await store.archivedAuction(quick))
            #expect(unsold.result == .unsold && unsold.reason == "no_bids")
            #expect(try await store.archivedAuction(cancelled)?.result == .cancelled)
            #expect(try await store.archivedAuction(running) == nil)
            #expect(await archiver.archiveFinished() == 0, "nothing new: nothing written again")
            let report = try await store.lotReport(ArchiveQuery())
            #expect(report.first?.lots == 2 && report.first?.unsold == 1 && report.first?.cancelled == 1)

            // The read model lets the archived lots go (not the running one) and keeps them gone:
            // a catch-up does not load them again. They are still read from the store.
            let readModel = node.readModel
            #expect(readModel.snapshot.count == 3)
            #expect(await readModel.evictArchived(now: now) == 0, "none ended a week ago")
            #expect(await readModel.evictArchived(now: now.advanced(by: .seconds(8 * 86_400))) == 2)
            #expect(readModel.summary(of: quick) == nil && readModel.summary(of: cancelled) == nil)
            #expect(readModel.summary(of: running) != nil)
            #expect(readModel.snapshot.count == 1)
            await readModel.catchUp()
            #expect(readModel.snapshot.count == 1, "evicted lots are not loaded again")
            #expect(try await store.load(quick).restore(quick).summary?.status == .closed(.unsold(.noBids)))
            // A node starting a week later does not load the archived lots at all.
            let later = AuctionReadModel(
                store: store, clock: ManualClock(now: now.advanced(by: .seconds(8 * 86_400))), archive: store)
            await later.catchUp()
            #expect(later.snapshot.count == 1, "only the running lot")
            #expect(later.summary(of: running) != nil)
            let unarchived = AuctionReadModel(
                store: store, clock: ManualClock(now: now.advanced(by: .seconds(8 * 86_400))))
            await unarchived.catchUp()
            #expect(unarchived.snapshot.count == 3, "without the archive, every lot")

            // A week after archiving, the live logs of the archived lots are compacted: the lots
            // load the same from their snapshots, their bids stay answerable, and a read model
            // starting from the store still sees them as they ended.
            var compacting = AuctionArchiver.Settings()
            compacting.compactAfter = .zero
            let compactor = AuctionArchiver(
                node: node, store: store, users: store, clock: SystemClock(), logger: logger, settings: compacting)
            let quickBefore = try await store.load(quick).restore(quick)
            #expect(await compactor.compactArchived() == 2)
            #expect(await compactor.compactArchived() == 0, "once")
            #expect(try await store.load(quick).restore(quick) == quickBefore)
            await #expect(throws: StorageError.compacted(auction: quick, keptFrom: quickBefore.seq)) {
                _ = try await store.events(of: quick, after: 0, limit: 10)
            }
            #expect(try await store.archivedAuction(quick) == unsold, "the history is archived")
            let late = PlaceBid(
                bidId: BidID(rawValue: "late")!, bidderId: UserID(rawValue: "bidder")!,
                maximum: Money(minorUnits: 5_000, currency: .eur))
            let answer = await node.submit(.placeBid(late), to: quick)
            guard case .failure(.rejected) = answer else {
                Issue.record("a bid on the compacted lot is refused by the rules (closed), not \(answer)")
                return
            }
            let fresh = AuctionReadModel(store: store, clock: ManualClock(now: now))
            await fresh.catchUp()
            #expect(fresh.summary(of: quick)?.status == .closed(.unsold(.noBids)))
            #expect(fresh.summary(of: cancelled) != nil && fresh.summary(of: running) != nil)
            #expect(await archiver.archiveFinished() == 0, "a compacted lot is not archived again for nothing")
            await cluster.stop()
        }
    }
}
