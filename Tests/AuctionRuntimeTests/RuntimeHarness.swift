import AuctionCore
import AuctionRuntime
import Foundation
import Storage
import Synchronization
import TestSupport
import Testing

/// A real store with a gate in front of `append`, so a test can hold a write in flight, count
/// writes, or make the next one fail before or after it commits.
final class GatedStore: EventStore {
    enum Failure { case beforeCommit, afterCommit }

    private struct State {
        var gateOpen = true
        var held: [CheckedContinuation<Void, Never>] = []
        var appendCount = 0
        var nextFailure: Failure?
        var gatedLoads: Set<AuctionID> = []
        var heldLoads: [CheckedContinuation<Void, Never>] = []
    }

    let inner: any EventStore
    private let state = Mutex(State())

    init(_ inner: any EventStore) { self.inner = inner }

    var appendCount: Int { state.withLock { $0.appendCount } }
    var heldCount: Int { state.withLock { $0.held.count } }

    func closeGate() { state.withLock { $0.gateOpen = false } }

    func openGate() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.gateOpen = true
            defer { state.held = [] }
            return state.held
        }
        held.forEach { $0.resume() }
    }

    func failNextAppend(_ failure: Failure) { state.withLock { $0.nextFailure = failure } }

    /// Holds every load of `auction` until `openLoads()`.
    func holdLoads(of auction: AuctionID) { state.withLock { _ = $0.gatedLoads.insert(auction) } }
    var heldLoadCount: Int { state.withLock { $0.heldLoads.count } }

    func openLoads() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.gatedLoads = []
            defer { state.heldLoads = [] }
            return state.heldLoads
        }
        held.forEach { $0.resume() }
    }

    func append(_ batch: AppendBatch) async throws(StorageError) {
        await withCheckedContinuation { continuation in
            let proceed = state.withLock { state -> Bool in
                state.appendCount += 1
                if state.gateOpen { return true }
                state.held.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
        let failure = state.withLock { state -> Failure? in
            defer { state.nextFailure = nil }
            return state.nextFailure
        }
        if failure == .beforeCommit { throw .unavailable("injected failure before commit") }
        try await inner.append(batch)
        if failure == .afterCommit { throw .unavailable("injected failure after commit") }
    }

    func migrate() async throws(StorageError) { try await inner.migrate() }
    func acquire(shard: ShardID, node: NodeID) async throws(StorageError) -> ShardLease {
        try await inner.acquire(shard: shard, node: node)
    }
    func lease(of shard: ShardID) async throws(StorageError) -> ShardLease? { try await inner.lease(of: shard) }
    func load(_ auction: AuctionID) async throws(StorageError) -> StoredAuction {
        await withCheckedContinuation { continuation in
            let proceed = state.withLock { state -> Bool in
                guard state.gatedLoads.contains(auction) else { return true }
                state.heldLoads.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
        return try await inner.load(auction)
    }
    func events(of auction: AuctionID, after afterSeq: Int64, limit: Int) async throws(StorageError) -> [StoredEvent] {
        try await inner.events(of: auction, after: afterSeq, limit: limit)
    }
    func logHeads(after cursor: LogCursor, limit: Int) async throws(StorageError) -> LogHeadsPage {
        try await inner.logHeads(after: cursor, limit: limit)
    }

    func feed(after cursor: FeedCursor, limit: Int) async throws(StorageError) -> FeedPage {
        try await inner.feed(after: cursor, limit: limit)
    }
}

enum RT {
    static let node = NodeID(rawValue: "node-1")!
    static let auction = AuctionID(rawValue: "lot-7")!
    static let seller = UserID(rawValue: "seller")!
    static let start = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)

    static func eur(_ cents: Int64) -> Money { Money(minorUnits: cents, currency: .eur) }

    static func terms(closingIn: Duration = .seconds(3_600), window: Duration = .seconds(120)) -> AuctionTerms {
        AuctionTerms(
            auctionId: auction, sellerId: seller, title: "Still life", startingPrice: eur(1_000), opensAt: start,
            closesAt: start.advanced(by: closingIn), extensionWindow: window)
    }

    static func bid(_ id: String, by bidder: String, _ cents: Int64) -> AuctionCommand {
        .placeBid(PlaceBid(bidId: BidID(rawValue: id)!, bidderId: UserID(rawValue: bidder)!, maximum: eur(cents)))
    }

    static func registry(
        _ store: any EventStore, clock: any EngineClock, node: NodeID = node, snapshotEvery: Int64 = 100
    ) -> AuctionRegistry {
        AuctionRegistry(
            configuration: .init(node: node, actor: .init(snapshotEvery: snapshotEvery)), store: store,
            writer: LogWriter(store: store), clock: clock)
    }
}

extension Result {
    var value: Success? { try? get() }
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
