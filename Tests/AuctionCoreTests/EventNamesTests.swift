import AuctionCore
import Testing

/// The one table of event names (`AuctionEvent.Kind`): every kind has a stored, a public and a
/// stream name, each unique, and the names readers depend on stay what they are.
@Suite struct EventNamesTests {
    @Test func everyKind_hasUniqueNames_inEachVocabulary() {
        let kinds = AuctionEvent.Kind.allCases
        #expect(Set(kinds.map(\.rawValue)).count == kinds.count)
        #expect(Set(kinds.map(\.publicName)).count == kinds.count)
        #expect(Set(kinds.map(\.streamName)).count == kinds.count)
        for kind in kinds { #expect(AuctionEvent.Kind(publicName: kind.publicName) == kind) }
    }

    @Test func theNamesReadersDependOn_areStable() {
        #expect(AuctionEvent.Kind.bidAccepted.publicName == "bid_placed")
        #expect(AuctionEvent.Kind.closed.publicName == "auction_closed")
        #expect(AuctionEvent.Kind.bidAccepted.streamName == "bid")
        #expect(AuctionEvent.Kind.closed.streamName == "closed")
        #expect(AuctionEvent.Kind.bidAccepted.rawValue == "bid_accepted", "a column of every stored log")
    }
}
