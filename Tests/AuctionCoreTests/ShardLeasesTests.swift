import AuctionCore
import Testing

/// The lease rules a node runs (and the seeded simulation with it).
@Suite struct ShardLeasesTests {
    let shard = ShardID(3)
    let other = ShardID(4)

    @Test func theFirstAcquisitionWins_aRacingOneKeepsIt() {
        var leases = ShardLeases()
        #expect(leases.epoch(of: shard) == nil)
        let first = leases.acquired(shard, epoch: Epoch(5))
        #expect(first.epoch == Epoch(5) && first.isNew)
        let racing = leases.acquired(shard, epoch: Epoch(6))
        #expect(racing.epoch == Epoch(5) && !racing.isNew, "a lease held is never replaced by a racing one")
        #expect(leases.mayServe(shard, under: Epoch(5)))
        #expect(!leases.mayServe(shard, under: Epoch(6)))
        #expect(!leases.mayServe(other, under: Epoch(5)))
    }

    @Test func aFenceDropsOnlyTheLeaseItConcerns() {
        var leases = ShardLeases()
        _ = leases.acquired(shard, epoch: Epoch(5))
        let olderFence = leases.fenced(shard, under: Epoch(4))
        #expect(!olderFence, "an older epoch's fence leaves the newer lease")
        #expect(leases.epoch(of: shard) == Epoch(5))
        let fence = leases.fenced(shard, under: Epoch(5))
        #expect(fence)
        #expect(leases.epoch(of: shard) == nil)
        #expect(!leases.mayServe(shard, under: Epoch(5)), "work loaded under it no longer serves")
        let again = leases.acquired(shard, epoch: Epoch(7))
        #expect(again.isNew && leases.epoch(of: shard) == Epoch(7))
    }

    @Test func aNewerEpochInTheLog_overtakesOnlyOlderLeases() {
        var leases = ShardLeases()
        _ = leases.acquired(shard, epoch: Epoch(5))
        _ = leases.acquired(other, epoch: Epoch(9))
        let seen = [(shard, Epoch(6)), (other, Epoch(9)), (ShardID(8), Epoch(1))]
        #expect(leases.overtaken(by: seen) == [shard])
        let released = leases.release(shard)
        #expect(released == Epoch(5))
        let again = leases.release(shard)
        #expect(again == nil)
        leases.releaseAll()
        #expect(leases.held.isEmpty)
    }
}
