import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import TestSupport
import Testing

@Suite struct GatewayAPITests {
    @Test func signUp_logIn_me() async throws {
        try await GatewayHarness.run { client, _ in
            let token = try await client.signUp("alice")
            let me = try await client.send(.get, "/v1/me", token: token)
            #expect(me.status == .ok)
            #expect(me.json["username"] as? String == "alice")
            #expect(me.json["roles"] as? [String] == ["bidder"])
            let again = try await client.send(
                .post, "/v1/users", json: #"{"username":"Alice","password":"password-456"}"#)
            #expect(again.status == .conflict)
            #expect(again.json["code"] as? String == "username_taken")
            let wrong = try await client.send(
                .post, "/v1/sessions", json: #"{"username":"alice","password":"not-it-at-all"}"#)
            #expect(wrong.status == .unauthorized)
            #expect(wrong.json["code"] as? String == "invalid_credentials")
            #expect(wrong.headers[.contentType] == "application/problem+json")
            #expect(wrong.json["status"] as? Int == 401, "problem+json status is a number")
            let admin = try await client.send(
                .post, "/v1/users", json: #"{"username":"mallory","password":"password-123","roles":["admin"]}"#)
            #expect(admin.status == .badRequest, "admin is never self-service")
        }
    }

    @Test func tokens_forgedWrongAlgorithmExpiredOrUnknownKey_areRefused() async throws {
        try await GatewayHarness.run { client, harness in
            let bob = try await client.signUp("bob")
            #expect(try await client.send(.get, "/v1/me").json["code"] as? String == "unauthenticated")
            #expect(try await client.send(.get, "/v1/me", token: "not.a.jwt").status == .unauthorized)

            let bobId = try #require(try await client.send(.get, "/v1/me", token: bob).json["id"] as? String)
            let identity = Identity(userId: .init(rawValue: bobId)!, username: "bob", roles: [.bidder])
            // Forged: signed by a key nobody configured, under the accepted kid.
            let forger = try await TokenAuthority.make(
                signing: .init(kid: "k1", privateKeyPEM: TokenAuthority.generatePrivateKeyPEM()))
            let forged = try await forger.issue(for: identity).token
            let forgedAnswer = try await client.send(.get, "/v1/me", token: forged)
            #expect(forgedAnswer.status == .unauthorized)
            #expect(forgedAnswer.json["code"] as? String == "invalid_token")

            // Wrong algorithm: HS256 with a guessable secret.
            let hmac = JWTKeyCollection()
            await hmac.add(hmac: "secret-secret-secret-secret-secret", digestAlgorithm: .sha256, kid: "k1")
            struct Payload: JWTPayload {
                var sub: SubjectClaim
                var exp: ExpirationClaim
                func verify(using algorithm: some JWTAlgorithm) throws {}
            }
            let hs256 = try await hmac.sign(Payload(sub: "u-bob", exp: .init(value: .distantFuture)), kid: "k1")
            let hs256Answer = try await client.send(.get, "/v1/me", token: hs256)
            #expect(hs256Answer.status == .unauthorized)
            #expect((hs256Answer.json["detail"] as? String)?.contains("ES256") == true)

            // Expired.
            let expired = try await harness.tokens.issue(for: identity, now: Date().addingTimeInterval(-7_200)).token
            #expect(
                (try await client.send(.get, "/v1/me", token: expired).json["detail"] as? String)?.contains("expired")
                    == true)

            // Unknown kid.
            let stranger = try await TokenAuthority.make(signing: .init(kid: "k9", privateKeyPEM: harness.signingPEM))
            let strangerAnswer = try await client.send(
                .get, "/v1/me", token: try await stranger.issue(for: identity).token)
            #expect((strangerAnswer.json["detail"] as? String)?.contains("key id") == true)

            // A token signed with the previous key (k0) is still accepted during a rotation.
            let previous = try await TokenAuthority.make(signing: .init(kid: "k0", privateKeyPEM: harness.previousPEM))
            let rotated = try await client.send(.get, "/v1/me", token: try await previous.issue(for: identity).token)
            #expect(rotated.status == .ok)
        }
    }

    /// Every role against every route that needs one.
    @Test func roles_gateEveryRoute() async throws {
        try await GatewayHarness.run { client, _ in
            let admin = try await client.logIn("root", "root-password")
            let seller = try await client.signUp("sam", roles: ["seller"])
            let bidder = try await client.signUp("bea", roles: ["bidder"])
            let created = try await client.send(
                .post, "/v1/auctions", json: auctionJSON(id: "lot-roles"), token: seller)
            #expect(created.status == .created)
            // Roles are granted to someone who takes no part otherwise (a grant revokes their tokens).
            let gus = try await client.signUp("gus", roles: ["bidder"])
            let userId = try await client.send(.get, "/v1/me", token: gus).json["id"] as! String
            let routes: [(String, HTTPRequest.Method, String, () -> String)] = [
                ("create auction", .post, "/v1/auctions", { auctionJSON(id: "lot-\(UUID().uuidString.prefix(8))") }),
                (
                    "bid", .post, "/v1/auctions/lot-roles/bids",
                    { #"{"bidId":"\#(UUID().uuidString)","maximum":5000,"currency":"EUR"}"# }
                ),
                ("cancel", .post, "/v1/auctions/lot-other/cancel", { #"{"reason":"withdrawn"}"# }),
                ("grant roles", .put, "/v1/users/\(userId)/roles", { #"{"roles":["bidder"]}"# }),
                ("me", .get, "/v1/me", { "" }),
                ("my settlements", .get, "/v1/me/settlements", { "" }),
                ("settlements", .get, "/v1/settlements", { "" }),
                ("pay", .post, "/v1/me/settlements/lot-roles/payment-method", { #"{"paymentMethod":"pm_card_visa"}"# }),
                ("second chance", .post, "/v1/me/settlements/lot-roles/second-chance", { #"{"accept":true}"# }),
                ("refund", .post, "/v1/settlements/lot-roles/refund", { #"{"amount":100,"currency":"EUR"}"# }),
                ("cancel settlement", .post, "/v1/settlements/lot-roles/cancel", { #"{"reason":"withdrawn"}"# }),
                ("my payment methods", .get, "/v1/me/payment-methods", { "" }),
                ("save payment method", .post, "/v1/me/payment-methods", { #"{"paymentMethod":"pm_card_visa"}"# }),
                ("remove payment method", .delete, "/v1/me/payment-methods/pm_card_visa", { "" }),
                ("bidding blocks", .get, "/v1/users/\(userId)/bidding-blocks", { "" }),
                ("lift bidding blocks", .delete, "/v1/users/\(userId)/bidding-blocks", { "" }),
            ]
            // Which role may do what: 401 without a token, 403 without the role.
            let allowed: [String: Set<String>] = [
                "create auction": ["seller", "admin"], "bid": ["bidder", "admin"], "cancel": ["admin"],
                "grant roles": ["admin"], "me": ["bidder", "seller", "admin"],
                "my settlements": ["bidder", "seller", "admin"], "settlements": ["admin"],
                "pay": ["bidder", "seller", "admin"], "second chance": ["bidder", "admin"], "refund": ["admin"],
                "cancel settlement": ["admin"], "my payment methods": ["bidder", "seller", "admin"],
                "save payment method": ["bidder", "seller", "admin"], "remove payment method": ["bidder", "seller", "admin"],
                "bidding blocks": ["admin"], "lift bidding blocks": ["admin"],
            ]
            // Allowed, but there is nothing to act on (the lot is not sold, no method saved, no block
            // in force): 404 past the role check.
            let unsold: Set<String> = [
                "pay", "second chance", "refund", "cancel settlement", "remove payment method", "lift bidding blocks",
            ]
            // Allowed, but this harness has no payment provider to check a method with.
            let withoutProvider: Set<String> = ["save payment method"]
            _ = try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-other"), token: seller)
            for (name, method, uri, body) in routes {
                for (role, token) in [("none", nil), ("bidder", bidder), ("seller", seller), ("admin", admin)]
                    as [(String, String?)]
                {
                    let json = body()
                    let response = try await client.send(method, uri, json: json.isEmpty ? nil : json, token: token)
                    if role == "none" {
                        #expect(response.status == .unauthorized, "\(name) without a token: \(response.status)")
                    } else if allowed[name]!.contains(role), unsold.contains(name) {
                        #expect(response.status == .notFound, "\(name) as \(role): \(response.status)")
                    } else if allowed[name]!.contains(role), withoutProvider.contains(name) {
                        #expect(response.status == .serviceUnavailable, "\(name) as \(role): \(response.status)")
                    } else if allowed[name]!.contains(role) {
                        #expect(
                            response.status.code < 300,
                            "\(name) as \(role): \(response.status) \(String(buffer: response.body))")
                    } else {
                        #expect(response.status == .forbidden, "\(name) as \(role): \(response.status)")
                    }
                    if name == "cancel", role == "admin" {
                        _ = try await client.send(
                            .post, "/v1/auctions", json: auctionJSON(id: "lot-other-\(UUID().uuidString.prefix(6))"),
                            token: seller)
                    }
                }
            }
        }
    }

    /// The stream itself is tested over real HTTP (ClusterProcessTests); here, what is refused before
    /// it opens.
    @Test func notifications_needATokenAndAValidSince() async throws {
        try await GatewayHarness.run { client, _ in
            #expect(try await client.send(.get, "/v1/me/notifications").status == .unauthorized)
            let bidder = try await client.signUp("nora")
            let bad = try await client.send(.get, "/v1/me/notifications?since=yesterday", token: bidder)
            #expect(bad.status == .badRequest)
            #expect((bad.json["detail"] as? String)?.contains("since") == true)
        }
    }

    @Test func malformedAndOversizedBodies_getA400Or413NamingTheProblem() async throws {
        try await GatewayHarness.run { client, _ in
            let unknown = try await client.send(
                .post, "/v1/users", json: #"{"username":"carl","password":"password-123","isAdmin":true}"#)
            #expect(unknown.status == .badRequest)
            #expect((unknown.json["detail"] as? String)?.contains("isAdmin") == true)
            let missing = try await client.send(.post, "/v1/users", json: #"{"username":"carl"}"#)
            #expect((missing.json["detail"] as? String)?.contains("password") == true)
            let notJSON = try await client.send(.post, "/v1/users", json: "username=carl")
            #expect(notJSON.status == .badRequest)
            let wrongType = try await client.send(
                .post, "/v1/users", json: #"{"username":42,"password":"password-123"}"#)
            #expect((wrongType.json["detail"] as? String)?.contains("username") == true)
            let huge = try await client.send(
                .post, "/v1/users",
                json: #"{"username":"carl","password":"\#(String(repeating: "x", count: 100_000))"}"#)
            #expect(huge.status == .contentTooLarge)
            #expect(try await client.send(.get, "/v1/nowhere").json["code"] as? String == "not_found")
        }
    }

    @Test func bids_acceptReplayAndRefuseWithRuleCodes() async throws {
        try await GatewayHarness.run { client, _ in
            let seller = try await client.signUp("sue", roles: ["seller"])
            let bidder = try await client.signUp("ben")
            let rival = try await client.signUp("rita")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-1"), token: seller).status
                    == .created)
            let bid = #"{"bidId":"ben-1","maximum":5000,"currency":"EUR"}"#
            let first = try await client.send(.post, "/v1/auctions/lot-1/bids", json: bid, token: bidder)
            #expect(first.status == .created)
            #expect(first.json["outcome"] as? String == "leading")
            let replay = try await client.send(.post, "/v1/auctions/lot-1/bids", json: bid, token: bidder)
            #expect(replay.status == .ok)
            #expect(replay.json["replayed"] as? Bool == true)
            let low = try await client.send(
                .post, "/v1/auctions/lot-1/bids", json: #"{"bidId":"r-1","maximum":500,"currency":"EUR"}"#, token: rival
            )
            #expect(low.status == .unprocessableContent)
            #expect(low.json["code"] as? String == "below_minimum")
            #expect(low.json["minimum"] as? String == "1050")
            let dollars = try await client.send(
                .post, "/v1/auctions/lot-1/bids", json: #"{"bidId":"r-2","maximum":9000,"currency":"USD"}"#,
                token: rival)
            #expect(dollars.json["code"] as? String == "currency_mismatch")
            let conflict = try await client.send(
                .post, "/v1/auctions/lot-1/bids", json: #"{"bidId":"ben-1","maximum":9000,"currency":"EUR"}"#,
                token: bidder)
            #expect(conflict.status == .conflict)
            let missing = try await client.send(.post, "/v1/auctions/nothing-here/bids", json: bid, token: bidder)
            #expect(missing.status == .notFound)
            let negative = try await client.send(
                .post, "/v1/auctions/lot-1/bids", json: #"{"bidId":"r-3","maximum":-5,"currency":"EUR"}"#, token: rival)
            #expect(negative.json["code"] as? String == "invalid_amount")
            let view = try await client.send(.get, "/v1/auctions/lot-1")
            #expect(view.json["price"] as? Int == 1_000)
            #expect(view.json["leaderPaddle"] as? Int == 101, "the first bidder of the lot holds paddle 101")
            #expect(view.json["leaderId"] == nil, "bidders are shown by paddle, never by account")
            #expect(view.json["maximum"] == nil, "a maximum is never shown")
            let metrics = String(buffer: try await client.send(.get, "/metrics").body)
            #expect(metrics.contains("artpay_bids_total{outcome=\"leading\"} 1"))
            #expect(metrics.contains("artpay_bids_total{outcome=\"below_minimum\"} 1"))
            #expect(metrics.contains("artpay_bids_total{outcome=\"replayed\"} 1"))
            let bidRoute = metrics.split(separator: "\n").first {
                $0.hasPrefix("artpay_http_requests_total{") && $0.contains("bids") && $0.contains("status=\"201\"")
            }
            #expect(
                bidRoute?.contains("lot-1") == false, "series are per route pattern, not per id: \(bidRoute ?? "none")")
            #expect(metrics.contains("artpay_http_request_duration_seconds_bucket{"))
        }
    }

    @Test func leaderboards_comeFromTheReadModel_withoutMaxima() async throws {
        try await GatewayHarness.run { client, _ in
            let seller = try await client.signUp("sol", roles: ["seller"])
            let ann = try await client.signUp("ann")
            let bo = try await client.signUp("boris")
            let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
            for (id, start) in [("lot-a", 1_000), ("lot-b", 9_000)] {
                let created = try await client.send(
                    .post, "/v1/auctions",
                    json:
                        #"{"id":"\#(id)","title":"Lot","currency":"EUR","startingPrice":\#(start),"closesAt":"\#(closes)","saleId":"s1"}"#,
                    token: seller)
                #expect(created.status == .created)
            }
            _ = try await client.send(
                .post, "/v1/auctions/lot-a/bids", json: #"{"bidId":"a1","maximum":8000,"currency":"EUR"}"#, token: ann)
            _ = try await client.send(
                .post, "/v1/auctions/lot-a/bids", json: #"{"bidId":"b1","maximum":3000,"currency":"EUR"}"#, token: bo)
            try await eventually("the read model has both bids") {
                let board = try await client.send(.get, "/v1/auctions/lot-a/leaderboard")
                return (board.json["bidders"] as? [[String: Any]])?.count == 2
            }
            let board = try await client.send(.get, "/v1/auctions/lot-a/leaderboard", token: bo)
            let bidders = board.json["bidders"] as? [[String: Any]] ?? []
            #expect(bidders.first?["highestPrice"] as? Int == 3_100, "the leader first, at the visible price")
            // Paddles per sale, in the order bidders first bid: ann 101, boris 102; nobody's account.
            #expect(bidders.map { $0["paddle"] as? Int } == [101, 102])
            let auction = board.json["auction"] as? [String: Any]
            #expect(auction?["leaderPaddle"] as? Int == 101)
            #expect(auction?["myPaddle"] as? Int == 102, "the caller sees their own paddle")
            let me = try await client.send(.get, "/v1/me", token: ann)
            let annId = try #require(me.json["id"] as? String)
            #expect(!Self.values(in: board.json).contains(annId), "no bidder's account id is shown")
            // The same paddle for ann on the other lot of the sale.
            let other = try await client.send(
                .post, "/v1/auctions/lot-b/bids", json: #"{"bidId":"a2","maximum":9500,"currency":"EUR"}"#, token: ann)
            #expect(other.json["paddle"] as? Int == 101)
            #expect((other.json["auction"] as? [String: Any])?["myPaddle"] as? Int == 101)
            // Each bidder's own lots, with how far their bids went (never their maxima).
            try await eventually("ann's lots include both") {
                let lots = try await client.send(.get, "/v1/me/bids", token: ann).json["lots"] as? [[String: Any]]
                return lots?.count == 2
            }
            let boLots = try await client.send(.get, "/v1/me/bids", token: bo).json["lots"] as? [[String: Any]] ?? []
            #expect(boLots.count == 1)
            #expect((boLots.first?["auction"] as? [String: Any])?["id"] as? String == "lot-a")
            #expect(boLots.first?["highestPrice"] as? Int == 3_100, "the price his bid moved the lot to")
            #expect(boLots.first?["leading"] as? Bool == false)
            #expect((boLots.first?["auction"] as? [String: Any])?["myPaddle"] as? Int == 102)
            #expect(try await client.send(.get, "/v1/me/bids").status == .unauthorized)
            // No value anywhere is the maximum (ids are random, so values are compared, not the text).
            #expect(!Self.values(in: board.json).contains { $0 == "8000" }, "a maximum is never shown")
            let active = try await client.send(.get, "/v1/leaderboards/most-active?minutes=5")
            let first = (active.json["auctions"] as? [[String: Any]])?.first
            #expect(first?["recentBids"] as? Int == 2)
            let top = try await client.send(.get, "/v1/sales/s1/top")
            #expect((top.json["auctions"] as? [[String: Any]])?.map { $0["id"] as? String } == ["lot-b", "lot-a"])
        }
    }

    @Test func rateLimit_answers429WithHeaders() async throws {
        try await GatewayHarness.run(rateLimit: .init(capacity: 3, refillPerSecond: 0.01)) { client, _ in
            for _ in 0..<3 {
                let ok = try await client.send(.get, "/v1/auctions/whatever")
                #expect(ok.headers[HTTPField.Name("RateLimit-Limit")!] == "3")
            }
            let limited = try await client.send(.get, "/v1/auctions/whatever")
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] != nil)
            #expect(limited.headers[HTTPField.Name("RateLimit-Remaining")!] == "0")
            #expect(limited.json["code"] as? String == "rate_limited")
        }
    }

    /// Every string and number in a JSON value, as text.
    static func values(in json: Any) -> [String] {
        switch json {
        case let object as [String: Any]: object.values.flatMap { values(in: $0) }
        case let array as [Any]: array.flatMap { values(in: $0) }
        case let string as String: [string]
        case let number as NSNumber: [number.stringValue]
        default: []
        }
    }
}
