import AuctionCore
@_spi(Simulation) import ClusterCore

/// N nodes in one process — each a membership instance and the node's routing (`ShardRouting`, the
/// type `ClusterNode` runs), with shard leases and auctions decided by the real rules — joined by a seeded,
/// lossy, reordering network with partitions, crashes and restarts, on a manual clock, writing to
/// an in-memory fenced log. Clients reach every node even when nodes cannot reach each other.
/// Deterministic: the same seed replays the same run, message for message.
struct ClusterSimulation {
    struct Node {
        var id: NodeID
        var address: NodeAddress
        var instance: MembershipInstance?
        var routing: ShardRouting?
        var generation: UInt64 = 0
        /// The node's leases under the real rules (`ShardLeases`, as `AuctionRegistry` keeps them).
        var leases = ShardLeases()
        var auctions: [AuctionID: Auction] = [:]
    }

    enum Payload {
        case membership(MembershipMessage)
        case request(bid: PlaceBid, auction: AuctionID, hops: Int)
        case response(bidId: BidID, accepted: Bool)
    }

    /// Index of the client endpoint (outside every partition).
    static let client = -1

    private struct Delivery {
        var at: Int64
        var order: Int
        var to: Int
        var from: NodeAddress
        var payload: Payload
    }

    let shardMap = ShardMap(shardCount: 64)
    var store = FencedLogModel()
    /// A bug planted in every node's `ShardRouting`, to show the checks catch it.
    var plantedFault: ShardRouting.PlantedFault?
    /// `ClusterNode.Configuration.fencedHoldOff`'s default.
    var fencedHoldOff = Duration.seconds(2)
    /// When set, the client sends a bid every `bidInterval` ms to a random node.
    var workload: (auctions: [AuctionID], bidInterval: Int64)?
    private var nextBidAt: Int64 = 0
    private var bidCounter = 0
    /// Bids the client heard "accepted" for.
    private(set) var acknowledged: [BidID: AuctionID] = [:]
    private(set) var bidsSent = 0

    struct Declaration {
        var at: Int64
        var observer: NodeID
        var subject: Member
    }

    private(set) var now: Int64 = 0
    private(set) var nodes: [Node]
    private var random: SeededRandom
    private var deliveries: [Delivery] = []
    private var order = 0
    /// Pairs of node indices that cannot talk (both directions).
    private var cut: Set<[Int]> = []
    var lossRate = 0.0
    var traced: NodeID?
    var traceWindow: ClosedRange<Int64>?
    let settings: MembershipSettings
    private(set) var deaths: [Declaration] = []
    /// Deaths that overrode a refutation the observer had already seen: never allowed.
    private(set) var refutedKills: [Declaration] = []
    private(set) var messagesSent = 0
    /// Milliseconds by which a node runs behind, per node index: a starved process (CPU-bound, or
    /// its threads queued behind other work) handles every message and every timer that much late.
    var lag: [Int: Int64] = [:]
    /// Times a node dropped every shard it held because its own health said it reached no majority.
    private(set) var shardDrops = 0

    init(nodeCount: Int, seed: UInt64, settings: MembershipSettings = .init()) {
        self.random = SeededRandom(seed: seed)
        self.settings = settings
        nodes = (0..<nodeCount).map {
            Node(id: NodeID(rawValue: "node-\($0 + 1)")!, address: NodeAddress(host: "10.0.0.\($0 + 1)", port: 7_000))
        }
    }

    var timestamp: Timestamp { Timestamp(millisecondsSinceEpoch: now) }

    // MARK: - Faults

    mutating func start(_ index: Int) {
        nodes[index].generation = UInt64(now + 1)
        let myself = Member(id: nodes[index].id, generation: nodes[index].generation, address: nodes[index].address)
        let seeds = nodes.indices.filter { $0 != index }.prefix(2).map { nodes[$0].address }
        nodes[index].instance = MembershipInstance(
            myself: myself, seeds: seeds, settings: settings, now: timestamp, seed: random.next())
        var routing = ShardRouting(
            me: myself.id, candidates: Placement.candidates([myself]), fencedHoldOff: fencedHoldOff)
        routing.plantedFault = plantedFault
        nodes[index].routing = routing
    }

    mutating func crash(_ index: Int) {
        nodes[index].instance = nil
        nodes[index].leases.releaseAll()
        nodes[index].auctions = [:]
        nodes[index].routing = nil
    }

    mutating func partition(_ index: Int) {
        for other in nodes.indices where other != index { cut.insert([min(index, other), max(index, other)]) }
        isolatedSince[index] = now
    }

    mutating func heal() {
        cut = []
        isolatedSince = [:]
    }

    /// When each node cut off from every other one was cut off.
    private var isolatedSince: [Int: Int64] = [:]
    /// Shards taken by a node cut off from all others for longer than it takes to notice
    /// (`minorityGrace`): a minority must take nothing.
    private(set) var acquisitionsWhileIsolated: [(node: NodeID, shard: ShardID, at: Int64)] = []
    var minorityGrace: Int64 = 5_000

    private func isolated(_ index: Int) -> Bool {
        guard let since = isolatedSince[index] else { return false }
        return now - since > minorityGrace
    }

    func isUp(_ index: Int) -> Bool { nodes[index].instance != nil }

    func view(of index: Int) -> [Member] { nodes[index].instance?.members ?? [] }

    // MARK: - Running

    /// Runs every delivery and timer up to `end` (simulated milliseconds).
    mutating func run(until end: Int64) {
        precondition(end >= now, "time only moves forward")
        while true {
            var next = end
            if let first = deliveries.first { next = min(next, first.at) }
            for index in nodes.indices {
                if let deadline = nodes[index].instance?.nextDeadline.millisecondsSinceEpoch {
                    next = min(next, max(deadline + (lag[index] ?? 0), now))
                }
            }
            if workload != nil { next = min(next, max(nextBidAt, now)) }
            now = next
            if let workload, now >= nextBidAt {
                nextBidAt = now + workload.bidInterval
                bidCounter += 1
                let auction = workload.auctions[Int(random.next() % UInt64(workload.auctions.count))]
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "b\(bidCounter)")!,
                    bidderId: UserID(rawValue: "bidder-\(random.next() % 5)")!,
                    maximum: Money(minorUnits: 1_000 + Int64(random.next() % 1_000_000), currency: .eur))
                sendBid(bid, for: auction, to: Int(random.next() % UInt64(nodes.count)))
            }
            while let first = deliveries.first, first.at <= now {
                deliveries.removeFirst()
                deliver(first)
            }
            for index in nodes.indices {
                guard let deadline = nodes[index].instance?.nextDeadline.millisecondsSinceEpoch,
                    deadline + (lag[index] ?? 0) <= now
                else {
                    continue
                }
                let directives = nodes[index].instance!.tick(now: timestamp)
                handle(directives, from: index)
            }
            if now >= end { return }
        }
    }

    private mutating func handle(_ directives: [MembershipDirective], from index: Int) {
        for directive in directives {
            switch directive {
            case .send(let message, let address):
                messagesSent += 1
                if let window = traceWindow, window.contains(now) {
                    print("  t=\(now) \(nodes[index].id) -> \(address): \(message.kind)")
                }
                guard let target = nodes.firstIndex(where: { $0.address == address }),
                    !cut.contains([min(index, target), max(index, target)]),
                    Double(random.next() % 1_000_000) / 1_000_000 >= lossRate
                else { continue }
                schedule(.membership(message), to: target, from: nodes[index].address)
            case .changed(let from, let to):
                viewChanged(at: index)
                if let traced, to.id == traced {
                    print("  t=\(now) \(nodes[index].id): \(from?.description ?? "-") -> \(to)")
                }
                if let from, from.generation == to.generation, to.status == .dead, from.incarnation > to.incarnation {
                    refutedKills.append(Declaration(at: now, observer: nodes[index].id, subject: to))
                }
                if to.status == .dead { deaths.append(Declaration(at: now, observer: nodes[index].id, subject: to)) }
            }
        }
    }

    private mutating func schedule(_ payload: Payload, to target: Int, from: NodeAddress) {
        let delay = Int64(random.next() % 15) + 1 + (lag[target] ?? 0)
        insert(Delivery(at: now + delay, order: order, to: target, from: from, payload: payload))
        order += 1
    }

    // MARK: - Workload and node logic

    /// The client sends a bid for `auction` to node `index`.
    mutating func sendBid(_ bid: PlaceBid, for auction: AuctionID, to index: Int) {
        bidsSent += 1
        guard Double(random.next() % 1_000_000) / 1_000_000 >= lossRate else { return }
        schedule(.request(bid: bid, auction: auction, hops: 0), to: index, from: NodeAddress(host: "client", port: 0))
    }

    private mutating func deliver(_ delivery: Delivery) {
        if delivery.to == Self.client {
            if case .response(let bidId, true) = delivery.payload, let auction = pendingBids[bidId] {
                acknowledged[bidId] = auction
            }
            return
        }
        guard nodes[delivery.to].instance != nil else { return }
        switch delivery.payload {
        case .membership(let message):
            let directives = nodes[delivery.to].instance!.receive(message, from: delivery.from, now: timestamp)
            handle(directives, from: delivery.to)
        case .request(let bid, let auction, let hops):
            pendingBids[bid.bidId] = auction
            route(bid, auction: auction, hops: hops, at: delivery.to)
        case .response:
            break
        }
    }

    private var pendingBids: [BidID: AuctionID] = [:]

    /// As `ClusterNode.route`: the node's `ShardRouting` decides; run here, forward, or refuse.
    private mutating func route(_ bid: PlaceBid, auction: AuctionID, hops: Int, at index: Int) {
        let shard = shardMap.shard(of: auction)
        guard let instance = nodes[index].instance,
            let decision = nodes[index].routing?.route(
                shard, hops: UInt8(hops), holdsShards: instance.holdsShards, now: .milliseconds(now))
        else { return }
        let owner: NodeID
        switch decision {
        case .refuse: return reply(bid, false)
        case .runHere: return reply(bid, execute(bid, auction: auction, shard: shard, at: index))
        case .forward(let to): owner = to
        }
        guard let target = nodes.firstIndex(where: { $0.id == owner }) else { return reply(bid, false) }
        guard !cut.contains([min(index, target), max(index, target)]),
            Double(random.next() % 1_000_000) / 1_000_000 >= lossRate
        else { return }
        schedule(.request(bid: bid, auction: auction, hops: hops + 1), to: target, from: nodes[index].address)
    }

    private mutating func reply(_ bid: PlaceBid, _ accepted: Bool) {
        guard Double(random.next() % 1_000_000) / 1_000_000 >= lossRate else { return }
        schedule(
            .response(bidId: bid.bidId, accepted: accepted), to: Self.client, from: NodeAddress(host: "node", port: 0))
    }

    /// What `AuctionRegistry` and `AuctionActor` carry out: the lease by the real `ShardLeases` (taken
    /// on first use, dropped when an append under it is fenced), then `Auction.decide` and a fenced
    /// append; a conflict drops the cached auction.
    private mutating func execute(_ bid: PlaceBid, auction id: AuctionID, shard: ShardID, at index: Int) -> Bool {
        let node = nodes[index].id
        if nodes[index].leases.epoch(of: shard) == nil {
            if isolated(index) { acquisitionsWhileIsolated.append((node, shard, now)) }
            _ = nodes[index].leases.acquired(shard, epoch: store.acquire(shard, by: node, at: now))
            nodes[index].auctions = nodes[index].auctions.filter { shardMap.shard(of: $0.key) != shard }
        }
        let epoch = nodes[index].leases.epoch(of: shard)!
        var auction = nodes[index].auctions[id] ?? store.load(id)
        switch auction.decide(.placeBid(bid), now: timestamp) {
        case .reject:
            return false
        case .alreadyAccepted, .alreadyCreated:
            return true
        case .lookUpInLog:
            // A retry older than the ledger's retention: this simulation sends none. Not
            // acknowledging is always safe for the checks (they judge acknowledged bids).
            return false
        case .accept(let events):
            switch store.append(
                id, shard: shard, epoch: epoch, firstSeq: auction.seq + 1, events: events, by: node, at: now)
            {
            case .written:
                try! auction.apply(contentsOf: events)
                nodes[index].auctions[id] = auction
                return true
            case .fenced:
                nodes[index].routing?.fenced(shard, now: .milliseconds(now))
                nodes[index].leases.fenced(shard, under: epoch)
                nodes[index].auctions = nodes[index].auctions.filter { shardMap.shard(of: $0.key) != shard }
                return false
            case .seqConflict:
                nodes[index].auctions[id] = nil
                return false
            }
        }
    }

    /// As `ClusterNode.viewDidChange`: the node's `ShardRouting` takes the new view and names the
    /// leases that go.
    private mutating func viewChanged(at index: Int) {
        guard let instance = nodes[index].instance, var routing = nodes[index].routing else { return }
        routing.viewChanged(candidates: Placement.candidates(instance.members))
        nodes[index].routing = routing
        let keepsShards = instance.holdsShards
        if !keepsShards, !nodes[index].leases.held.isEmpty { shardDrops += 1 }
        for shard in routing.shardsToRelease(among: nodes[index].leases.held.keys, holdsShards: keepsShards) {
            nodes[index].leases.release(shard)
            nodes[index].auctions = nodes[index].auctions.filter { shardMap.shard(of: $0.key) != shard }
        }
    }

    private mutating func insert(_ delivery: Delivery) {
        var low = 0
        var high = deliveries.count
        while low < high {
            let mid = (low + high) / 2
            let item = deliveries[mid]
            if (item.at, item.order) < (delivery.at, delivery.order) { low = mid + 1 } else { high = mid }
        }
        deliveries.insert(delivery, at: low)
    }
}

/// The fenced log as the stores keep it (`EventStore`'s contract), in memory, with a switch that
/// breaks fencing — only so a test can show the simulation catches a stale writer.
struct FencedLogModel {
    enum AppendOutcome { case written, fenced, seqConflict }

    struct Entry {
        var seq: Int64
        var epoch: Epoch
        var event: AuctionEvent
        var writer: NodeID
    }

    var fencingEnabled = true
    private(set) var leases: [ShardID: (epoch: Epoch, owner: NodeID)] = [:]
    private(set) var logs: [AuctionID: [Entry]] = [:]
    /// Writes accepted under an epoch older than the shard's newest: must never happen.
    private(set) var staleWrites: [(shard: ShardID, epoch: Epoch, current: Epoch, writer: NodeID, at: Int64)] = []
    /// Who wrote under each (shard, epoch): at most one node each.
    private(set) var writers: [ShardID: [Epoch: Set<NodeID>]] = [:]

    mutating func seed(_ auction: AuctionID, events: [AuctionEvent]) {
        logs[auction] = events.enumerated().map {
            Entry(seq: Int64($0.offset + 1), epoch: Epoch(0), event: $0.element, writer: NodeID(rawValue: "setup")!)
        }
    }

    mutating func acquire(_ shard: ShardID, by node: NodeID, at now: Int64) -> Epoch {
        let epoch = Epoch((leases[shard]?.epoch.rawValue ?? 0) + 1)
        leases[shard] = (epoch, node)
        return epoch
    }

    mutating func append(
        _ auction: AuctionID, shard: ShardID, epoch: Epoch, firstSeq: Int64, events: [AuctionEvent], by node: NodeID,
        at now: Int64
    ) -> AppendOutcome {
        let current = leases[shard]?.epoch ?? Epoch(0)
        if fencingEnabled, current != epoch { return .fenced }
        let log = logs[auction] ?? []
        guard Int64(log.count) == firstSeq - 1 else { return .seqConflict }
        if current != epoch { staleWrites.append((shard, epoch, current, node, now)) }
        writers[shard, default: [:]][epoch, default: []].insert(node)
        logs[auction] =
            log
            + events.enumerated().map {
                Entry(seq: firstSeq + Int64($0.offset), epoch: epoch, event: $0.element, writer: node)
            }
        return .written
    }

    func load(_ auction: AuctionID) -> Auction {
        (try? Auction.replay(id: auction, events: (logs[auction] ?? []).map(\.event))) ?? Auction(id: auction)
    }
}
