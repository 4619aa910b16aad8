public import AuctionCore
public import Storage

/// Every auction of the cluster, in memory on every node: the read side (CQRS). Fed by the
/// owners' event fan-out, it answers listings and views locally, without asking the owner;
/// each answer carries its `seq`, so a client knows how fresh it is.
///
/// Invariant: an auction's state here only moves forward in seq; a gap (a missed push, an auction
/// first seen mid-log) is filled from the store before later events are applied.
public actor AuctionReadModel {
    private var auctions: [AuctionID: Auction] = [:]
    private let store: any EventStore

    public init(store: any EventStore) {
        self.store = store
    }

    /// Loads every auction that has a log (call once at start; live events keep it current).
    public func bootstrap() async {
        var after: AuctionID?
        while true {
            guard let page = try? await store.auctionIDs(after: after, limit: 500), !page.isEmpty else { return }
            for id in page where auctions[id] == nil { await reload(id) }
            after = page.last
            if page.count < 500 { return }
        }
    }

    /// Applies pushed events (any order, duplicates allowed).
    public func apply(_ events: [StoredEvent]) async {
        for event in events.sorted(by: { ($0.auction, $0.seq) < ($1.auction, $1.seq) }) {
            let current = auctions[event.auction]?.seq ?? 0
            if event.seq <= current { continue }
            if event.seq == current + 1, var auction = auctions[event.auction] ?? (current == 0 ? Auction(id: event.auction) : nil),
                (try? auction.apply(event.event)) != nil
            {
                auctions[event.auction] = auction
            } else {
                await reload(event.auction)
            }
        }
    }

    private func reload(_ id: AuctionID) async {
        guard let loaded = try? await store.load(id).restore(id), loaded.state != nil else { return }
        if loaded.seq > (auctions[id]?.seq ?? 0) { auctions[id] = loaded }
    }

    public func summary(of id: AuctionID) -> AuctionSummary? {
        auctions[id]?.summary
    }

    /// Auctions matching `filter`, soonest end first, at most `limit`.
    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        auctions.values.compactMap(\.summary).filter(filter)
            .sorted { ($0.endsAt, $0.auctionId) < ($1.endsAt, $1.auctionId) }
            .prefix(limit).map { $0 }
    }

    public var count: Int { auctions.count }
}
