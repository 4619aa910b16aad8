import AuctionCore
import AuctionRuntime
import Storage
import TestSupport
import Testing

@Suite struct AuctionActorTests {
    @Test func bidIsAnsweredOnlyOnceDurable() async throws {
        try await withSQLiteStore { sqlite, _ in
            let store = GatedStore(sqlite)
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(store, clock: clock)
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            store.closeGate()
            let pending = Task { await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction) }
            try await eventually("the append is held") { store.heldCount == 1 }
            let logged = try await sqlite.events(of: RT.auction, after: 0, limit: 10)
            #expect(logged.count == 1, "only the creation is durable while the bid's append is held")
            store.openGate()
            let accepted = try await pending.value.get()
            #expect(accepted.seq == 2)
            #expect(accepted.receipt?.outcome == .leading)
            let durable = try await sqlite.events(of: RT.auction, after: 0, limit: 10)
            #expect(durable.count == 2)
        }
    }

    @Test func commandsArrivingDuringAnAppend_goOutTogetherInTheNext() async throws {
        try await withSQLiteStore { sqlite, _ in
            let store = GatedStore(sqlite)
            let registry = RT.registry(store, clock: ManualClock(now: RT.start))
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            let before = store.appendCount
            store.closeGate()
            // Sent one after another (each decided before the next goes), so every bid is above the
            // last; none waits for its answer. The first append is held meanwhile.
            var pending: [Task<Result<CommandAccepted, EngineError>, Never>] = []
            for index in 0..<50 {
                pending.append(
                    Task {
                        await registry.submit(
                            RT.bid("b\(index)", by: "bidder-\(index)", 2_000 + Int64(index) * 100), to: RT.auction)
                    })
                try await eventually("bid \(index) decided") {
                    await registry.loadedActor(RT.auction)?.summary?.bidCount == index + 1
                }
            }
            let sent = pending
            let results = Task {
                var outcomes: [Result<CommandAccepted, EngineError>] = []
                for task in sent { outcomes.append(await task.value) }
                return outcomes
            }
            #expect(store.heldCount == 1)
            #expect(store.appendCount == before + 1)
            store.openGate()
            let outcomes = await results.value
            #expect(outcomes.allSatisfy { $0.value != nil })
            #expect(Set(outcomes.compactMap { $0.value?.receipt?.seq }) == Set(2...51))
            #expect(store.appendCount == before + 2, "the 49 bids decided during the first append share one")
        }
    }

    @Test func fencedAppend_stopsTheActor_andNothingIsWritten() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(sqlite, clock: clock)
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            let shard = ShardMap().shard(of: RT.auction)
            let taken = try await sqlite.acquire(shard: shard, node: NodeID(rawValue: "node-2")!)
            let refused = await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction)
            #expect(refused.failure == .notOwner(shard))
            #expect(await registry.ownedShards[shard] == nil)
            let log = try await sqlite.events(of: RT.auction, after: 0, limit: 10)
            #expect(log.count == 1)
            // The other node writes under the new epoch; this node's old actor is gone for good.
            let other = RT.registry(sqlite, clock: clock, node: NodeID(rawValue: "node-2")!)
            let accepted = try await other.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(accepted.seq == 2)
            let after = try await sqlite.events(of: RT.auction, after: 0, limit: 10)
            #expect(after.map(\.epoch) == [Epoch(1), Epoch(taken.epoch.rawValue + 1)])
        }
    }

    /// An auction whose log is still being read when its shard is lost (another auction of the
    /// shard is fenced meanwhile) must not be installed under the lost lease: it used to be, and
    /// then every command to it was fenced again, for ever — the wedged hot lot of a chaos run (a
    /// big log takes long to read). The next command takes the shard afresh and is answered.
    @Test func anAuctionLoadedUnderALeaseLostMeanwhile_isNotKept() async throws {
        try await withSQLiteStore { sqlite, _ in
            let store = GatedStore(sqlite)
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(store, clock: clock)
            let shards = ShardMap()
            let shard = shards.shard(of: RT.auction)
            let sibling = (0..<10_000).lazy.map { AuctionID(rawValue: "sibling-\($0)")! }
                .first { shards.shard(of: $0) == shard }!
            var siblingTerms = RT.terms()
            siblingTerms.auctionId = sibling
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            _ = try await registry.submit(.create(siblingTerms), to: sibling).get()
            await registry.release(shard)

            // The lot's log is being read (held) under the lease taken for it...
            store.holdLoads(of: RT.auction)
            let first = Task { await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction) }
            try await eventually("the lot's load is held") { store.heldLoadCount == 1 }
            // ...while another node takes the shard and a sibling's append is fenced.
            _ = try await sqlite.acquire(shard: shard, node: NodeID(rawValue: "node-2")!)
            let fenced = await registry.submit(RT.bid("s1", by: "bob", 5_000), to: sibling)
            #expect(fenced.failure == .notOwner(shard))
            store.openLoads()
            #expect(await first.value.failure == .notOwner(shard), "loaded under the lost lease: not kept")

            // The next command takes the shard afresh and is answered (it used to be fenced for ever).
            let again = await registry.submit(RT.bid("b2", by: "alice", 5_000), to: RT.auction)
            #expect(again.value?.seq == 2, "\(again)")
            #expect(await registry.ownedShards[shard] != nil)
        }
    }

    @Test func failedAppend_reloads_andTheBidIsDecidedAfresh() async throws {
        try await withSQLiteStore { sqlite, _ in
            let store = GatedStore(sqlite)
            let registry = RT.registry(store, clock: ManualClock(now: RT.start))
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            store.failNextAppend(.beforeCommit)
            let failed = await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction)
            guard case .storeUnavailable = failed.failure else {
                Issue.record("got \(failed)")
                return
            }
            let retried = try await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(!retried.replayed)
            #expect(retried.seq == 2)
        }
    }

    @Test func appendWhoseReplyWasLost_isAnsweredFromTheLogOnRetry() async throws {
        try await withSQLiteStore { sqlite, _ in
            let store = GatedStore(sqlite)
            let registry = RT.registry(store, clock: ManualClock(now: RT.start))
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            store.failNextAppend(.afterCommit)
            let failed = await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction)
            guard case .storeUnavailable = failed.failure else {
                Issue.record("got \(failed)")
                return
            }
            let retried = try await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(retried.replayed, "the retry must not make a second bid")
            #expect(retried.receipt?.seq == 2)
            let log = try await sqlite.events(of: RT.auction, after: 0, limit: 10)
            #expect(log.count == 2)
        }
    }

    @Test func restart_recoversTheSameState_fromSnapshotAndTail() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let first = RT.registry(sqlite, clock: clock, snapshotEvery: 5)
            _ = try await first.submit(.create(RT.terms()), to: RT.auction).get()
            var last: CommandAccepted?
            for index in 0..<23 {
                clock.advance(by: .seconds(1))
                last = try await first.submit(
                    RT.bid("b\(index)", by: index % 2 == 0 ? "alice" : "bob", 2_000 + Int64(index) * 700),
                    to: RT.auction
                ).get()
            }
            await first.shutdown()
            let stored = try await sqlite.load(RT.auction)
            #expect(stored.snapshot != nil)
            #expect(stored.tail.count < 24)
            let second = RT.registry(sqlite, clock: clock, snapshotEvery: 5)
            let replay = try await second.submit(RT.bid("b22", by: "alice", 2_000 + 22 * 700), to: RT.auction).get()
            #expect(replay.replayed)
            #expect(replay.summary == last?.summary)
        }
    }

    @Test func closeTimer_closesOnce_atTheEnd_followingSoftClose() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(sqlite, clock: clock)
            let terms = RT.terms(closingIn: .seconds(600), window: .seconds(60))
            _ = try await registry.submit(.create(terms), to: RT.auction).get()
            clock.advance(to: terms.closesAt.advanced(by: .seconds(-10)))
            let late = try await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(late.summary.endsAt == clock.now().advanced(by: .seconds(60)))
            clock.advance(to: terms.closesAt)
            let stillOpen = try await registry.submit(RT.bid("b2", by: "bob", 6_000), to: RT.auction).get()
            #expect(stillOpen.summary.status == .running)
            let end = stillOpen.summary.endsAt
            clock.advance(to: end)
            try await eventually("the timer closes the auction") {
                let log = try await sqlite.events(of: RT.auction, after: 0, limit: 20)
                return log.contains { if case .closed = $0.event { true } else { false } }
            }
            let log = try await sqlite.events(of: RT.auction, after: 0, limit: 20)
            #expect(log.filter { if case .closed = $0.event { true } else { false } }.count == 1)
            guard case .settlement(.opened)? = log.last?.event,
                case .closed(let closed)? = log.dropLast().last?.event
            else {
                Issue.record("closed, then the settlement opened: \(log.suffix(2).map(\.event.kind))")
                return
            }
            #expect(
                closed.result
                    == .sold(winnerId: UserID(rawValue: "bob")!, bidId: BidID(rawValue: "b2")!, price: RT.eur(5_100)))
            let tooLate = await registry.submit(RT.bid("b3", by: "carol", 90_000), to: RT.auction)
            #expect(tooLate.failure == .rejected(.auctionClosed))
        }
    }

    @Test func unknownAuctions_leaveNoActorBehind_andFinishedOnesPassivate() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(sqlite, clock: clock)
            let missing = await registry.submit(RT.bid("b1", by: "alice", 5_000), to: AuctionID(rawValue: "nothing")!)
            #expect(missing.failure == .rejected(.auctionNotFound))
            #expect(await registry.activeAuctionCount == 0)
            _ = try await registry.submit(.create(RT.terms()), to: RT.auction).get()
            _ = try await registry.submit(.cancel(reason: "withdrawn"), to: RT.auction).get()
            #expect(await registry.passivateIdle() == 1)
            let reloaded = await registry.submit(RT.bid("b2", by: "bob", 5_000), to: RT.auction)
            #expect(reloaded.failure == .rejected(.auctionCancelled))
        }
    }

    /// What a node keeps loaded follows the auctions in use: an idle running auction far from its
    /// end passivates (and comes back with its bids on the next command); one near its end, or one
    /// used within the idle time, keeps its actor and close timer.
    @Test func idleRunningAuctions_farFromTheirEnd_passivate_andComeBackWhole() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(sqlite, clock: clock)
            let near = AuctionID(rawValue: "near-its-end")!
            var nearTerms = RT.terms(closingIn: .seconds(60))
            nearTerms.auctionId = near
            _ = try await registry.submit(.create(RT.terms(closingIn: .seconds(3_600))), to: RT.auction).get()
            _ = try await registry.submit(.create(nearTerms), to: near).get()
            _ = try await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(await registry.activeAuctionCount == 2)

            // Used within the idle time: both stay.
            #expect(
                await registry.passivateIdle(
                    unusedFor: .seconds(600), runningEndingAfter: RT.start.advanced(by: .seconds(120)))
                    == 0)
            // Idle: the one ending within the horizon stays, the other goes.
            #expect(
                await registry.passivateIdle(unusedFor: .zero, runningEndingAfter: RT.start.advanced(by: .seconds(120)))
                    == 1)
            #expect(await registry.loadedActor(near) != nil)
            #expect(await registry.loadedActor(RT.auction) == nil)
            // Without a horizon running auctions stay (their actor holds the close timer).
            #expect(await registry.passivateIdle() == 0)

            let again = try await registry.submit(RT.bid("b1", by: "alice", 5_000), to: RT.auction).get()
            #expect(again.replayed, "the reloaded actor knows the bid it accepted before passivating")
            #expect(await registry.activeAuctionCount == 2)
        }
    }

    /// A retry older than the ledger's retention (its receipt kept only as a fingerprint) is
    /// answered from the log with its original receipt — also after a restart from a snapshot —
    /// and the same id with other content is still a conflict.
    @Test func aRetryOlderThanTheRetention_isAnsweredFromTheLog() async throws {
        try await withSQLiteStore { sqlite, _ in
            let clock = ManualClock(now: RT.start)
            let registry = RT.registry(sqlite, clock: clock)
            _ = try await registry.submit(.create(RT.terms(closingIn: .seconds(7_200), window: .zero)), to: RT.auction)
                .get()
            var minimum: Int64 = 1_000
            var first: [BidReceipt] = []
            for index in 0..<400 {
                clock.advance(by: .seconds(1))
                let accepted = try await registry.submit(
                    RT.bid("late-\(index)", by: index % 2 == 0 ? "alice" : "bob", minimum), to: RT.auction
                ).get()
                minimum = accepted.summary.minimumNextBid.minorUnits
                if index < 3, let receipt = accepted.receipt { first.append(receipt) }
            }
            let ledger = try #require(await registry.loadedActor(RT.auction)?.ledger)
            #expect(ledger.lookup(first[0].bidId) == .inLog, "the first bids are fingerprints by now")

            let retry = try await registry.submit(RT.bid("late-0", by: "alice", 1_000), to: RT.auction).get()
            #expect(retry.replayed)
            #expect(retry.receipt == first[0])
            let conflict = await registry.submit(RT.bid("late-1", by: "bob", 999_999), to: RT.auction)
            #expect(conflict.failure == .rejected(.bidIdConflict(first[1].bidId)))
            await registry.shutdown()

            let restarted = RT.registry(sqlite, clock: clock)
            let again = try await restarted.submit(
                RT.bid("late-2", by: "alice", first[2].maximum.minorUnits), to: RT.auction
            )
            .get()
            #expect(again.replayed)
            #expect(again.receipt == first[2])
        }
    }
}
