import Foundation
import Gateway
import HummingbirdTesting
import TestSupport
import Testing

/// `/v1/webhooks`: an admin registers, inspects, replays and removes endpoints; bad input is refused.
@Suite struct WebhookAPITests {
    @Test func anAdmin_managesEndpoints_andBadInputIsRefused() async throws {
        try await GatewayHarness.run { client, _ in
            let root = try await client.logIn("root", "root-password")
            let bidder = try await client.signUp("ben")
            let body = #"{"url":"https://hooks.example.test/artpay","types":["bid_placed","auction_closed"]}"#
            #expect(try await client.send(.post, "/v1/webhooks", json: body, token: bidder).status == .forbidden)
            #expect(try await client.send(.get, "/v1/webhooks", token: bidder).status == .forbidden)

            let created = try await client.send(.post, "/v1/webhooks", json: body, token: root)
            #expect(created.status == .created, "\(created.json)")
            let id = try #require(created.json["id"] as? String)
            let secret = try #require(created.json["secret"] as? String)
            #expect(secret.hasPrefix("whsec_") && secret.count == 6 + 64, "a secret is made and shown once")
            #expect(created.json["types"] as? [String] == ["auction_closed", "bid_placed"])
            #expect(created.json["cursor"] as? String == "0.0", "from now: an empty feed's head")

            let listed = try await client.send(.get, "/v1/webhooks", token: root)
            let endpoints = listed.json["endpoints"] as? [[String: Any]] ?? []
            #expect(endpoints.map { $0["id"] as? String } == [id])
            #expect(endpoints.first?["secret"] == nil, "never shown again")
            let one = try await client.send(.get, "/v1/webhooks/\(id)", token: root)
            #expect(one.json["url"] as? String == "https://hooks.example.test/artpay")
            #expect(one.json["secret"] == nil)
            let log = try await client.send(.get, "/v1/webhooks/\(id)/deliveries", token: root)
            #expect(log.status == .ok)
            #expect((log.json["deliveries"] as? [Any])?.isEmpty == true)

            let replayed = try await client.send(
                .post, "/v1/webhooks/\(id)/replay", json: #"{"after":"start"}"#, token: root)
            #expect(replayed.status == .ok)
            #expect(replayed.json["cursor"] as? String == "0.0")

            let refusals: [(String, String, String)] = [
                (#"{"url":"ftp://hooks.example.test/x"}"#, "invalid_webhook_url", "not http(s)"),
                (#"{"url":"/relative"}"#, "invalid_webhook_url", "relative"),
                (#"{"url":"https://user:pw@hooks.example.test/"}"#, "invalid_webhook_url", "user info"),
                (#"{"url":"https://hooks.example.test/","types":["teleported"]}"#, "unknown_event_type", "type"),
                (#"{"url":"https://hooks.example.test/","secret":"short"}"#, "malformed_request", "short secret"),
                (#"{"url":"https://hooks.example.test/","from":"yesterday"}"#, "invalid_cursor", "from"),
                (#"{"url":"https://hooks.example.test/","colour":"red"}"#, "malformed_request", "unknown field"),
            ]
            for (json, code, why) in refusals {
                let answer = try await client.send(.post, "/v1/webhooks", json: json, token: root)
                #expect(answer.status == .badRequest, "\(why): \(answer.status)")
                #expect(answer.json["code"] as? String == code, "\(why): \(answer.json)")
            }
            let badReplay = try await client.send(
                .post, "/v1/webhooks/\(id)/replay", json: #"{"after":"later"}"#, token: root)
            #expect(badReplay.json["code"] as? String == "invalid_cursor")
            #expect(
                try await client.send(.get, "/v1/webhooks/wh-nothing", token: root).json["code"] as? String
                    == "webhook_not_found")

            #expect(try await client.send(.delete, "/v1/webhooks/\(id)", token: root).status == .noContent)
            #expect(try await client.send(.get, "/v1/webhooks/\(id)", token: root).status == .notFound)
            #expect(try await client.send(.delete, "/v1/webhooks/\(id)", token: root).status == .notFound)
        }
    }
}
