import AuctionCore
import Storage
import Testing

/// Two writers on separate connections fight over one shard: each takes the lease (fencing the
/// other) and appends until it is fenced, then takes the lease back. A writer whose append hits a
/// seq conflict re-reads the log end and goes on with its old epoch, like a zombie owner: only the
/// fence can stop it. Whatever the
/// interleaving, the log must have no gap, no duplicate seq, epochs that never decrease, exactly
/// the acknowledged appends, and no append that started after a newer epoch was granted.
@Suite struct FencingRaceTests {
    /// Hands out a global order of moments, so the test can say "this append began after that acquire".
    actor Ledger {
        private var tick = 0
        private(set) var grants: [(epoch: Epoch, at: Int)] = []
        private(set) var acknowledged: [(epoch: Epoch, startedAt: Int, seqs: ClosedRange<Int64>, tags: [String])] = []

        func now() -> Int {
            tick += 1
            return tick
        }
        func granted(_ epoch: Epoch) { grants.append((epoch, now())) }

        private var arrived = 0
        private var waiting: [CheckedContinuation<Void, Never>] = []
        /// Returns once `count` writers have called it: both hold a lease before either appends, so
        /// the first appends always race a newer grant.
        func barrier(_ count: Int) async {
            arrived += 1
            if arrived >= count {
                waiting.forEach { $0.resume() }
                waiting.removeAll()
            } else {
                await withCheckedContinuation { waiting.append($0) }
            }
        }
        func acknowledge(_ epoch: Epoch, startedAt: Int, seqs: ClosedRange<Int64>, tags: [String]) {
            acknowledged.append((epoch, startedAt, seqs, tags))
        }
    }

    static let shard = ShardID(3)
    static let auction = AuctionID(rawValue: "contested")!

    static func writer(
        _ name: String, store: any EventStore, ledger: Ledger, appends: Int
    ) async throws {
        let node = NodeID(rawValue: name)!
        var written = 0
        var counter = 0
        var first = true
        while written < appends {
            let lease = try await store.acquire(shard: shard, node: node)
            await ledger.granted(lease.epoch)
            if first {
                await ledger.barrier(2)
                first = false
            }
            var last = try await store.events(of: auction, after: 0, limit: Int.max).last?.seq ?? 0
            while written < appends {
                let tags = (0..<Int.random(in: 1...3)).map { _ -> String in
                    counter += 1
                    return "\(name)-\(counter)"
                }
                let events = tags.map {
                    AuctionEvent.extended(
                        ClosingExtended(endsAt: Timestamp(millisecondsSinceEpoch: 0), byBidId: BidID(rawValue: $0)!))
                }
                let startedAt = await ledger.now()
                do {
                    try await store.append(
                        AppendBatch(entries: [
                            AppendEntry(
                                auction: auction, shard: shard, epoch: lease.epoch, firstSeq: last + 1, events: events)
                        ]))
                } catch .seqConflict {
                    // The log moved under it; a zombie keeps writing with its epoch: only fencing stops it.
                    last = try await store.events(of: auction, after: 0, limit: Int.max).last?.seq ?? 0
                    continue
                } catch {
                    guard case .fenced = error else { throw error }
                    break
                }
                await ledger.acknowledge(
                    lease.epoch, startedAt: startedAt, seqs: (last + 1)...(last + Int64(events.count)), tags: tags)
                last += Int64(events.count)
                written += 1
                if Int.random(in: 0..<4) == 0 { await Task.yield() }
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func twoWritersRacing_neverBreakTheLog(_ backend: Backend) async throws {
        for _ in 0..<3 {
            try await withStore(backend) { store, other, _ in
                let ledger = Ledger()
                async let first: Void = Self.writer("node-a", store: store, ledger: ledger, appends: 40)
                async let second: Void = Self.writer("node-b", store: other, ledger: ledger, appends: 40)
                _ = try await (first, second)
                try await Self.check(store: store, ledger: ledger)
            }
        }
    }

    static func check(store: any EventStore, ledger: Ledger) async throws {
        let log = try await store.events(of: auction, after: 0, limit: Int.max)
        let acknowledged = await ledger.acknowledged
        let grants = await ledger.grants
        // No gap, no duplicate (events(of:) also checks the order).
        #expect(log.map(\.seq) == Array(1...Int64(log.count)))
        // Epochs never decrease along seq.
        #expect(zip(log, log.dropFirst()).allSatisfy { $0.epoch <= $1.epoch })
        // Exactly the acknowledged appends, each under its writer's epoch.
        #expect(log.count == acknowledged.reduce(0) { $0 + $1.seqs.count })
        for ack in acknowledged {
            let slice = log.filter { ack.seqs.contains($0.seq) }
            #expect(slice.map(\.epoch) == Array(repeating: ack.epoch, count: ack.seqs.count))
            #expect(
                slice.map { event -> String in
                    guard case .extended(let extended) = event.event else { return "?" }
                    return extended.byBidId.rawValue
                } == ack.tags)
            // No append may succeed once a newer epoch was granted before it began.
            let newer = grants.filter { $0.epoch > ack.epoch && $0.at < ack.startedAt }
            #expect(newer.isEmpty, "append under \(ack.epoch) began after \(newer.first!.epoch) was granted")
        }
        // Both writers got in: the race really happened.
        #expect(Set(log.map(\.epoch)).count > 1)
    }
}
