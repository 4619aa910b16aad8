import Gateway
import Metrics
import MetricsTestKit
import TestSupport
import Testing

/// Bids are counted as they are answered, by outcome, through swift-metrics: read here from
/// `TestMetrics`, with no `/metrics` text parsed.
@Suite struct BidMetricsTests {
    @Test func everyAnsweredBid_isCountedOnceByItsOutcome() async throws {
        let metrics = TestMetrics()
        try await GatewayHarness.run(metrics: metrics) { client, _ in
            let seller = try await client.signUp("sue", roles: ["seller"])
            let bidder = try await client.signUp("ben")
            let rival = try await client.signUp("rita")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-m"), token: seller).status
                    == .created)
            let bid = #"{"bidId":"ben-1","maximum":5000,"currency":"EUR"}"#
            #expect(
                try await client.send(.post, "/v1/auctions/lot-m/bids", json: bid, token: bidder).status == .created)
            #expect(try await client.send(.post, "/v1/auctions/lot-m/bids", json: bid, token: bidder).status == .ok)
            let outbid = #"{"bidId":"r-1","maximum":3000,"currency":"EUR"}"#
            #expect(
                try await client.send(.post, "/v1/auctions/lot-m/bids", json: outbid, token: rival).status == .created)
            let low = #"{"bidId":"r-2","maximum":500,"currency":"EUR"}"#
            #expect(
                try await client.send(.post, "/v1/auctions/lot-m/bids", json: low, token: rival).status
                    == .unprocessableContent)
        }
        let byOutcome = Dictionary(
            uniqueKeysWithValues: metrics.counters(label: "artpay_bids_total").map {
                ($0.dimensions.first { $0.0 == "outcome" }?.1 ?? "?", $0.totalValue)
            })
        #expect(byOutcome == ["leading": 1, "replayed": 1, "outbid": 1, "below_minimum": 1], "\(byOutcome)")
    }
}
