import AuctionCore
import ClusterCore

/// N membership instances in one process, joined by a seeded, lossy, reordering network with
/// partitions, crashes and restarts, on a manual clock. Deterministic: the same seed replays the
/// same run, message for message.
struct MembershipSimulation {
    struct Node {
        var id: NodeID
        var address: NodeAddress
        var instance: MembershipInstance?
        var generation: UInt64 = 0
    }

    private struct Delivery {
        var at: Int64
        var order: Int
        var to: Int
        var from: NodeAddress
        var message: MembershipMessage
    }

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
    }

    mutating func crash(_ index: Int) {
        nodes[index].instance = nil
    }

    mutating func partition(_ index: Int) {
        for other in nodes.indices where other != index { cut.insert([min(index, other), max(index, other)]) }
    }

    mutating func heal() {
        cut = []
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
            for node in nodes {
                if let deadline = node.instance?.nextDeadline.millisecondsSinceEpoch { next = min(next, max(deadline, now)) }
            }
            now = next
            while let first = deliveries.first, first.at <= now {
                deliveries.removeFirst()
                guard nodes[first.to].instance != nil else { continue }
                let directives = nodes[first.to].instance!.receive(first.message, from: first.from, now: timestamp)
                handle(directives, from: first.to)
            }
            for index in nodes.indices {
                guard let deadline = nodes[index].instance?.nextDeadline.millisecondsSinceEpoch, deadline <= now else { continue }
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
                let delay = Int64(random.next() % 15) + 1
                insert(Delivery(at: now + delay, order: order, to: target, from: nodes[index].address, message: message))
                order += 1
            case .changed(let from, let to):
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
