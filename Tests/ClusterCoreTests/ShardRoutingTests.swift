import AuctionCore
import ClusterCore
import Testing

/// The routing rules `ClusterNode` and the seeded simulation share, one by one.
@Suite struct ShardRoutingTests {
    static let a = NodeID(rawValue: "node-a")!
    static let b = NodeID(rawValue: "node-b")!
    static let shardMap = ShardMap(shardCount: 64)

    /// A shard placed on `owner` among a and b.
    static func shard(ownedBy owner: NodeID) -> ShardID {
        (0..<shardMap.shardCount).map { ShardID($0) }.first { Placement.owner(of: $0, among: [a, b]) == owner }!
    }

    @Test func aCommand_runsOnItsOwner_isForwardedOnce_andRefusedAfterTwoHops() {
        var routing = ShardRouting(me: Self.a, candidates: [Self.a, Self.b], fencedHoldOff: .seconds(2))
        let mine = Self.shard(ownedBy: Self.a)
        let theirs = Self.shard(ownedBy: Self.b)
        #expect(routing.route(mine, hops: 0, holdsShards: true, now: .zero) == .runHere)
        #expect(routing.route(mine, hops: 2, holdsShards: true, now: .zero) == .runHere, "the owner runs it")
        #expect(routing.route(theirs, hops: 0, holdsShards: true, now: .zero) == .forward(to: Self.b))
        #expect(routing.route(theirs, hops: 1, holdsShards: true, now: .zero) == .forward(to: Self.b))
        #expect(routing.route(theirs, hops: 2, holdsShards: true, now: .zero) == .refuse(.tooManyHops))
        #expect(routing.owns(mine, holdsShards: true) && !routing.owns(theirs, holdsShards: true))
        #expect(routing.shardsPlacedHere(of: Self.shardMap) == 64 - routing.shardsPlacedHereOfOthers())
    }

    @Test func withoutAMajority_nothingRunsHere_andEveryLeaseGoes() {
        var routing = ShardRouting(me: Self.a, candidates: [Self.a, Self.b], fencedHoldOff: .seconds(2))
        let mine = Self.shard(ownedBy: Self.a)
        let theirs = Self.shard(ownedBy: Self.b)
        #expect(routing.route(mine, hops: 0, holdsShards: false, now: .zero) == .refuse(.noMajority))
        #expect(!routing.owns(mine, holdsShards: false))
        #expect(routing.shardsToRelease(among: [mine, theirs], holdsShards: false) == [mine, theirs])
        #expect(routing.shardsToRelease(among: [mine, theirs], holdsShards: true) == [theirs], "placed elsewhere")
        routing.viewChanged(candidates: [])
        #expect(routing.route(mine, hops: 0, holdsShards: true, now: .zero) == .refuse(.noOwner))
    }

    @Test func aShardTakenByAnotherNode_isHeldOff_untilTheHoldOffOrAViewChange() {
        var routing = ShardRouting(me: Self.a, candidates: [Self.a, Self.b], fencedHoldOff: .seconds(2))
        let mine = Self.shard(ownedBy: Self.a)
        routing.fenced(mine, now: .seconds(10))
        #expect(routing.route(mine, hops: 0, holdsShards: true, now: .seconds(11)) == .refuse(.heldOff(mine)))
        #expect(routing.route(mine, hops: 0, holdsShards: true, now: .seconds(12)) == .runHere, "2 s later")
        routing.fenced(mine, now: .seconds(20))
        routing.viewChanged(candidates: [Self.a, Self.b])
        #expect(
            routing.route(mine, hops: 0, holdsShards: true, now: .seconds(20)) == .refuse(.heldOff(mine)),
            "the same placement: still held off")
        routing.viewChanged(candidates: [Self.a])
        #expect(routing.route(mine, hops: 0, holdsShards: true, now: .seconds(20)) == .runHere, "a new placement")
    }
}

extension ShardRouting {
    fileprivate func shardsPlacedHereOfOthers() -> Int {
        (0..<ShardRoutingTests.shardMap.shardCount).filter { owner(of: ShardID($0)) != me }.count
    }
}
