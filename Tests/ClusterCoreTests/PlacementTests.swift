import AuctionCore
import ClusterCore
import Testing

@Suite struct PlacementTests {
    static let shards = ShardMap()

    static func nodes(_ count: Int) -> [NodeID] { (1...count).map { NodeID(rawValue: "node-\($0)")! } }

    @Test(arguments: [3, 5, 10])
    func balance_isWithinAQuarterOfTheMean(nodes count: Int) {
        let assignment = Placement.assignment(shardMap: Self.shards, candidates: Self.nodes(count))
        #expect(assignment.count == Int(Self.shards.shardCount))
        let perNode = Dictionary(grouping: assignment.values, by: { $0 }).mapValues(\.count)
        let mean = Double(Self.shards.shardCount) / Double(count)
        let maximum = Double(perNode.values.max() ?? 0)
        print(
            "placement: \(count) nodes, max/mean = \(String(format: "%.3f", maximum / mean)), per node \(perNode.values.sorted())"
        )
        // 1,024 shards thrown at N nodes: the busiest gets about mean + 2σ (1.19 for 10 nodes).
        #expect(maximum / mean <= 1.25)
    }

    @Test(arguments: [3, 5, 10])
    func membershipChange_movesOnlyTheShardsOfTheChangedNode(nodes count: Int) {
        let before = Placement.assignment(shardMap: Self.shards, candidates: Self.nodes(count))
        let removed = Self.nodes(count)[1]
        let after = Placement.assignment(shardMap: Self.shards, candidates: Self.nodes(count).filter { $0 != removed })
        let moved = before.filter { after[$0.key] != $0.value }
        #expect(moved.allSatisfy { $0.value == removed }, "only the removed node's shards move")
        let joined = Placement.assignment(shardMap: Self.shards, candidates: Self.nodes(count + 1))
        let movedOnJoin = before.filter { joined[$0.key] != $0.value }
        #expect(movedOnJoin.allSatisfy { joined[$0.key] == Self.nodes(count + 1).last })
        let fraction = Double(movedOnJoin.count) / Double(Self.shards.shardCount)
        print(
            "placement: join of node \(count + 1) moves \(String(format: "%.3f", fraction)) of shards (1/N = \(String(format: "%.3f", 1 / Double(count + 1))))"
        )
        #expect(abs(fraction - 1 / Double(count + 1)) < 0.05)
    }

    @Test func candidates_areLiveAuctionMembersOnly() {
        let address = NodeAddress(host: "127.0.0.1", port: 1)
        let members = [
            Member(id: NodeID(rawValue: "a")!, generation: 1, address: address),
            Member(id: NodeID(rawValue: "b")!, generation: 1, address: address, status: .suspect),
            Member(id: NodeID(rawValue: "c")!, generation: 1, address: address, status: .dead),
            Member(id: NodeID(rawValue: "d")!, generation: 1, address: address, roles: [.gateway]),
        ]
        #expect(Placement.candidates(members) == [NodeID(rawValue: "a")!, NodeID(rawValue: "b")!])
    }
}
