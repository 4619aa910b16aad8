import AuctionCore
import Foundation
import Gateway
import HummingbirdTesting
import Storage
import TestSupport
import Testing

/// `/v1/analytics/*` and `/v1/archive/auctions/{id}`: admins see every archived lot, a seller
/// their own, a bidder nothing; exports as CSV and JSON lines.
@Suite struct AnalyticsAPITests {
    static func record(_ id: String, seller: String, hammer: Int64?, endedAt: Int64) -> AuctionRecord {
        let end = Timestamp(millisecondsSinceEpoch: endedAt)
        return AuctionRecord(
            auctionId: id, seq: 5, saleId: "autumn", sellerId: seller, title: "=HYPERLINK(\"x\"), lot \(id)",
            currency: "EUR", startingPrice: 1_000, reservePrice: nil, buyNowPrice: nil,
            opensAt: end.advanced(by: .seconds(-3_600)), closesAt: end, endedAt: end,
            result: hammer == nil ? .unsold : .sold, reason: hammer == nil ? "no_bids" : nil, hammer: hammer,
            winnerId: hammer == nil ? nil : "u-alice", winnerPaddle: hammer == nil ? nil : 101,
            bids: hammer == nil
                ? []
                : [
                    .init(
                        bidId: "\(id)-b", bidderId: "u-alice", paddle: 101, price: hammer!,
                        at: end.advanced(by: .seconds(-4)), boughtNow: false)
                ],
            extensions: [], settlement: hammer == nil ? nil : "settled", captured: hammer, refunded: nil)
    }

    @Test func reports_exports_andRecords_byWhoAsks() async throws {
        try await GatewayHarness.run { client, harness in
            let root = try await client.logIn("root", "root-password")
            let sue = try await client.signUp("sue", roles: ["seller"])
            let sueId = try #require(try await client.send(.get, "/v1/me", token: sue).json["id"] as? String)
            let ben = try await client.signUp("ben")
            let now = Timestamp(millisecondsSinceEpoch: 1_795_000_000_000)
            for record in [
                Self.record("an-1", seller: sueId, hammer: 4_000, endedAt: 1_795_000_000_000),
                Self.record("an-2", seller: sueId, hammer: nil, endedAt: 1_795_000_100_000),
                Self.record("an-3", seller: "u-other", hammer: 9_000, endedAt: 1_795_000_200_000),
            ] {
                #expect(try await harness.store.archive(record, at: now))
            }
            let all = try await client.send(.get, "/v1/analytics/lots?by=seller", token: root)
            #expect(all.status == .ok, "\(all.json)")
            let rows = all.json["rows"] as? [[String: Any]] ?? []
            #expect(rows.count == 2)
            let mine = try await client.send(.get, "/v1/analytics/lots", token: sue)
            let sueRows = mine.json["rows"] as? [[String: Any]] ?? []
            #expect(sueRows.first?["lots"] as? Int == 2, "a seller sees their own lots only: \(mine.json)")
            #expect(sueRows.first?["sellThrough"] as? Double == 0.5)
            #expect(try await client.send(.get, "/v1/analytics/lots?seller=u-other", token: sue).status == .forbidden)
            #expect(try await client.send(.get, "/v1/analytics/lots", token: ben).status == .forbidden)
            #expect(try await client.send(.get, "/v1/analytics/lots?by=week", token: root).status == .badRequest)
            #expect(try await client.send(.get, "/v1/analytics/lots?from=yesterday", token: root).status == .badRequest)

            let timing = try await client.send(.get, "/v1/analytics/bid-timing", token: root)
            let windows = timing.json["windows"] as? [[String: Any]] ?? []
            #expect(windows.first?["bids"] as? Int == 2, "both bids came in the last 10 s")

            let csv = String(buffer: try await client.send(.get, "/v1/analytics/export?format=csv", token: root).body)
            let lines = csv.split(separator: "\r\n")
            #expect(lines.count == 4, "a header and three lots: \(csv)")
            #expect(lines.first?.hasPrefix("auctionId,saleId,sellerId,title") == true)
            #expect(lines[1].contains("\"'=HYPERLINK(\"\"x\"\"), lot an-1\""), "quoted, and no formula: \(lines[1])")
            let jsonl = String(
                buffer: try await client.send(.get, "/v1/analytics/export?format=jsonl", token: sue).body)
            let exported = jsonl.split(separator: "\n").compactMap {
                try? JSONDecoder().decode(AuctionRecord.self, from: Data($0.utf8))
            }
            #expect(exported.map(\.auctionId) == ["an-1", "an-2"])
            #expect(try await client.send(.get, "/v1/analytics/export?format=xml", token: root).status == .badRequest)

            let record = try await client.send(.get, "/v1/archive/auctions/an-1", token: sue)
            #expect(record.json["hammer"] as? Int == 4_000)
            #expect(try await client.send(.get, "/v1/archive/auctions/an-3", token: sue).status == .notFound)
            #expect(try await client.send(.get, "/v1/archive/auctions/an-3", token: root).status == .ok)
        }
    }
}
