import AuctionCore
import ClusterCore
import Testing

@testable import Node

/// The persistent pieces of the read model's snapshot: they must give the answers of the plain
/// structures they replace, and an old copy must not see the writer's later changes.
@Suite struct ReadModelStructureTests {
    @Test(arguments: [1, 2, 3]) func chunkedSortedArray_staysSorted_likeAPlainArray(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var chunked = ChunkedSortedArray<Int>(chunkSize: 2)
        var plain: [Int] = []
        var published: [(ChunkedSortedArray<Int>, [Int])] = []
        for step in 0..<2_000 {
            let value = Int(random.next() % 300)
            if random.next() % 3 == 0, let index = plain.firstIndex(of: value) {
                plain.remove(at: index)
                chunked.remove(value)
            } else if random.next() % 7 == 0 {
                chunked.remove(value + 1_000)  // absent: no change
            } else {
                plain.insert(value, at: plain.firstIndex { $0 >= value } ?? plain.count)
                chunked.insert(value)
            }
            if step % 100 == 0 { published.append((chunked, plain)) }
            #expect(chunked.count == plain.count)
        }
        #expect(Array(chunked) == plain)
        for (copy, expected) in published { #expect(Array(copy) == expected) }
    }

    @Test func bidsPerSecond_countsWholeSeconds_andForgetsBeyondAnHour() {
        var bids = BidsPerSecond()
        let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
        bids.record(start)
        bids.record(start.advanced(by: .milliseconds(400)))
        bids.record(start.advanced(by: .milliseconds(1_200)))
        bids.record(start.advanced(by: .milliseconds(900)))  // late, into an earlier second
        #expect(bids.count(since: start) == 4)
        #expect(bids.count(since: start.advanced(by: .milliseconds(999))) == 4)
        #expect(bids.count(since: start.advanced(by: .milliseconds(1_000))) == 1)
        #expect(bids.count(since: start.advanced(by: .seconds(2))) == 0)
        bids.record(start.advanced(by: .seconds(3_601)))
        #expect(bids.count(since: start) == 2, "the first second is over an hour before the newest bid")
        for second in 0..<10_000 { bids.record(start.advanced(by: .seconds(Int64(4_000 + second)))) }
        #expect(bids.count(since: start) == 3_601, "one entry per second of the last hour, however many bids")
    }
}
