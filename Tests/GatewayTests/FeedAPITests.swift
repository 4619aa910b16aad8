import AuctionCore
import Foundation
import Gateway
import HTTPTypes
import HummingbirdTesting
import Storage
import TestSupport
import Testing

/// `GET /v1/feed`: the commit-ordered feed for the `service` role, as pages and as a stream.
@Suite struct FeedAPITests {
    /// A user the admin granted the service role, logged in again (the grant revokes earlier tokens).
    static func service(_ client: any TestClientProtocol, _ username: String) async throws -> String {
        let root = try await client.logIn("root", "root-password")
        let token = try await client.signUp(username)
        let id = try #require(try await client.send(.get, "/v1/me", token: token).json["id"] as? String)
        let granted = try await client.send(
            .put, "/v1/users/\(id)/roles", json: #"{"roles":["service"]}"#, token: root)
        #expect(granted.status == .ok, "\(granted.json)")
        return try await client.logIn(username, "password-123")
    }

    static func events(_ response: TestResponse) -> [[String: Any]] {
        response.json["events"] as? [[String: Any]] ?? []
    }

    @Test func onlyTheServiceRole_readsTheFeed_andNobodyGrantsItThemselves() async throws {
        try await GatewayHarness.run { client, _ in
            let bidder = try await client.signUp("ben")
            #expect(try await client.send(.get, "/v1/feed").status == .unauthorized)
            let refused = try await client.send(.get, "/v1/feed", token: bidder)
            #expect(refused.status == .forbidden)
            let selfGranted = try await client.send(
                .post, "/v1/users", json: #"{"username":"sly","password":"password-123","roles":["service"]}"#)
            #expect(selfGranted.status == .badRequest, "service is granted by an admin only")
            let service = try await Self.service(client, "svc")
            #expect(try await client.send(.get, "/v1/feed", token: service).status == .ok)
        }
    }

    @Test func pages_listEveryEventInCommitOrder_byPublicName_resumableAndFiltered() async throws {
        try await GatewayHarness.run { client, _ in
            let seller = try await client.signUp("sue", roles: ["seller"])
            let ben = try await client.signUp("ben")
            let rita = try await client.signUp("rita")
            let service = try await Self.service(client, "svc")
            for lot in ["lot-f1", "lot-f2"] {
                #expect(
                    try await client.send(.post, "/v1/auctions", json: auctionJSON(id: lot), token: seller).status
                        == .created)
            }
            let bids = [
                ("lot-f1", "b1", 5_000, ben), ("lot-f2", "b2", 2_000, rita), ("lot-f1", "b3", 7_000, rita),
            ]
            for (lot, id, maximum, token) in bids {
                let body = #"{"bidId":"\#(id)","maximum":\#(maximum),"currency":"EUR"}"#
                #expect(
                    try await client.send(.post, "/v1/auctions/\(lot)/bids", json: body, token: token).status
                        == .created)
            }
            // SQLite numbers events as they commit: all six are there at once.
            let all = try await client.send(.get, "/v1/feed", token: service)
            #expect(all.status == .ok)
            let events = Self.events(all)
            #expect(
                events.map { "\($0["auctionId"] ?? "?") \($0["type"] ?? "?") \($0["seq"] ?? "?")" } == [
                    "lot-f1 auction_created 1", "lot-f2 auction_created 1", "lot-f1 bid_placed 2",
                    "lot-f2 bid_placed 2", "lot-f1 bid_placed 3",
                ], "in the order they committed: \(events)")
            let first = try #require(events.first)
            #expect(first["title"] as? String == "Lot lot-f1")
            #expect(first["seq"] as? Int == 1)
            let bid = try #require(events.first { $0["type"] as? String == "bid_placed" })
            #expect(bid["bidderId"] as? String != nil, "services see accounts")
            #expect(bid["maximum"] == nil, "a maximum never leaves the owner")
            #expect(bid["currency"] as? String == "EUR")
            let end = try #require(all.json["next"] as? String)
            #expect(end == events.last?["cursor"] as? String)

            // One at a time from the start: the same events.
            var cursor: String?
            var paged: [String] = []
            while true {
                let path = "/v1/feed?limit=1" + (cursor.map { "&after=\($0)" } ?? "")
                let page = try await client.send(.get, path, token: service)
                let next = try #require(page.json["next"] as? String)
                if next == cursor { break }
                paged += Self.events(page).compactMap { $0["cursor"] as? String }
                cursor = next
            }
            #expect(paged == events.compactMap { $0["cursor"] as? String })

            // Only closings and bids, from the middle.
            let middle = try #require(events[2]["cursor"] as? String)
            let filtered = try await client.send(
                .get, "/v1/feed?after=\(middle)&types=bid_placed,auction_closed", token: service)
            #expect(Self.events(filtered).allSatisfy { $0["type"] as? String == "bid_placed" })
            #expect(Self.events(filtered).count == events.count - 3)
            #expect(filtered.json["next"] as? String == end)

            // Nothing new: the same cursor back.
            let nothing = try await client.send(.get, "/v1/feed?after=\(end)", token: service)
            #expect(Self.events(nothing).isEmpty)
            #expect(nothing.json["next"] as? String == end)
        }
    }

    /// Once an archived lot's live log is compacted, a cursor from before the feed's horizon is
    /// refused (410), for the feed and for a webhook replay; `start` reads what is kept.
    @Test func aCursorFromBeforeCompaction_isGone_notSilentlySkipped() async throws {
        try await GatewayHarness.run { client, harness in
            let seller = try await client.signUp("sue", roles: ["seller"])
            let ben = try await client.signUp("ben")
            let service = try await Self.service(client, "svc")
            let root = try await client.logIn("root", "root-password")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-c1"), token: seller).status
                    == .created)
            for (id, maximum) in [("b1", 5_000), ("b2", 6_000)] {
                let body = #"{"bidId":"\#(id)","maximum":\#(maximum),"currency":"EUR"}"#
                #expect(
                    try await client.send(.post, "/v1/auctions/lot-c1/bids", json: body, token: ben).status
                        == .created)
            }
            let before = Self.events(try await client.send(.get, "/v1/feed", token: service))
            #expect(before.count == 3)
            let first = try #require(before.first?["cursor"] as? String)
            let webhook = try await client.send(
                .post, "/v1/webhooks", json: #"{"url":"http://127.0.0.1:9/hook","from":"start"}"#, token: root)
            let endpoint = try #require(webhook.json["id"] as? String)
            let end = try #require(before.last?["cursor"] as? String)
            #expect(
                try await client.send(
                    .post, "/v1/webhooks/\(endpoint)/replay", json: #"{"after":"\#(end)"}"#, token: root
                ).status == .ok)

            // The lot is archived at its last seq and its log compacted (as a week later).
            let lot = AuctionID(rawValue: "lot-c1")!
            let live = try await harness.store.load(lot).restore(lot)
            let terms = try #require(live.state?.terms)
            let record = AuctionRecord(
                auctionId: "lot-c1", seq: live.seq, saleId: nil, sellerId: terms.sellerId.rawValue,
                title: terms.title, currency: "EUR", startingPrice: terms.startingPrice.minorUnits, reservePrice: nil,
                buyNowPrice: nil, opensAt: terms.opensAt, closesAt: terms.closesAt, endedAt: terms.closesAt,
                result: .cancelled, reason: "test", hammer: nil, winnerId: nil, winnerPaddle: nil, bids: [],
                extensions: [], settlement: nil, captured: nil, refunded: nil)
            #expect(try await harness.store.archive(record, at: terms.opensAt))
            #expect(try await harness.store.compact(lot, keeping: live) == .compacted(removed: 2))

            let gone = try await client.send(.get, "/v1/feed?after=\(first)", token: service)
            #expect(gone.status == .gone)
            #expect(gone.json["code"] as? String == "feed_cursor_expired", "\(gone.json)")
            let kept = Self.events(try await client.send(.get, "/v1/feed", token: service))
            #expect(kept.map { $0["seq"] as? Int } == [3], "what the log keeps")
            let replay = try await client.send(
                .post, "/v1/webhooks/\(endpoint)/replay", json: #"{"after":"\#(first)"}"#, token: root)
            #expect(replay.status == .gone)
            #expect(replay.json["code"] as? String == "feed_cursor_expired")
            // The lot still answers, from its snapshot.
            let view = try await client.send(.get, "/v1/auctions/lot-c1", token: ben)
            #expect(view.status == .ok)
        }
    }

    @Test func badInput_getsAClearError() async throws {
        try await GatewayHarness.run { client, _ in
            let service = try await Self.service(client, "svc")
            let cases: [(String, Int, String)] = [
                ("/v1/feed?after=abc", 400, "invalid_cursor"),
                ("/v1/feed?after=1.-2", 400, "invalid_cursor"),
                ("/v1/feed?after=0.99999", 400, "unknown_cursor"),
                ("/v1/feed?types=bid_placed,teleported", 400, "unknown_event_type"),
                ("/v1/feed?types=", 400, "unknown_event_type"),
                ("/v1/feed?limit=0", 400, "malformed_request"),
                ("/v1/feed?limit=5000", 400, "malformed_request"),
            ]
            for (path, status, code) in cases {
                let answer = try await client.send(.get, path, token: service)
                #expect(answer.status.code == status, "\(path): \(answer.status)")
                #expect(answer.json["code"] as? String == code, "\(path): \(answer.json)")
            }
            let stream = try await client.send(
                .get, "/v1/feed?after=0.99999", token: service, headers: [.accept: "text/event-stream"])
            #expect(stream.status == .badRequest, "a stream refuses a bad cursor with a status, before it starts")
        }
    }

    @Test func theStream_goesOnAsEventsCommit_andResumesFromLastEventID() async throws {
        try await GatewayHarness.run(live: true) { client, _ in
            let port = try #require(client.port)
            let seller = try await client.signUp("sue", roles: ["seller"])
            let ben = try await client.signUp("ben")
            let service = try await Self.service(client, "svc")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-s"), token: seller).status
                    == .created)
            let stream = try await RawConnection.open(port: port, from: "127.0.0.6")
            defer { stream.close() }
            stream.send(
                "GET /v1/feed?types=bid_placed HTTP/1.1\r\nHost: node\r\nAccept: text/event-stream\r\n"
                    + "Authorization: Bearer \(service)\r\n\r\n")
            try await eventually("the stream starts") { stream.text.contains("\r\n\r\n") }
            #expect(stream.text.hasPrefix("HTTP/1.1 200"), "\(stream.text.prefix(80))")
            #expect(!stream.text.contains("event: auction_created"), "filtered out")
            let body = #"{"bidId":"b1","maximum":5000,"currency":"EUR"}"#
            #expect(try await client.send(.post, "/v1/auctions/lot-s/bids", json: body, token: ben).status == .created)
            try await eventually("the bid arrives on the open stream") { stream.text.contains("event: bid_placed") }
            let id = try #require(
                // Lines by byte: in a Swift string, chunk framing's "\r\n" is one character.
                stream.text.utf8.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
                    .first { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) })

            // Reconnecting with the last id seen: only what came after it.
            let rita = try await client.signUp("rita")
            let second = #"{"bidId":"r1","maximum":9000,"currency":"EUR"}"#
            #expect(
                try await client.send(.post, "/v1/auctions/lot-s/bids", json: second, token: rita).status == .created)
            let resumed = try await RawConnection.open(port: port, from: "127.0.0.7")
            defer { resumed.close() }
            resumed.send(
                "GET /v1/feed HTTP/1.1\r\nHost: node\r\nAccept: text/event-stream\r\nLast-Event-ID: \(id)\r\n"
                    + "Authorization: Bearer \(service)\r\n\r\n")
            try await eventually("the resumed stream starts") { resumed.text.contains("\r\n\r\n") }
            #expect(resumed.text.hasPrefix("HTTP/1.1 200"))
            try await eventually("the next bid arrives") { resumed.text.contains("\"bidId\":\"r1\"") }
            #expect(!resumed.text.contains("id: \(id)\n"), "not the event it had")
            #expect(!resumed.text.contains("auction_created"), "nor anything before it")
        }
    }
}
