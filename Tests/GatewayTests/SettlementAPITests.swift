import Foundation
import HTTPTypes
import Hummingbird
import AsyncHTTPClient
import AuctionCore
import HummingbirdTesting
import PaymentSandbox
import Payments
import TestSupport
import Testing

@testable import Gateway

/// The settlement routes on one node: a sold lot's invoice reaches its buyer only, paying is the
/// buyer's alone, and provider webhooks are refused unless signed.
@Suite struct SettlementAPITests {
    @Test func theBuyerSeesTheInvoice_andChoosesAMethod_nobodyElse() async throws {
        try await GatewayHarness.run { client, _ in
            let seller = try await client.signUp("sasha", roles: ["seller"])
            let winner = try await client.signUp("wanda", roles: ["bidder"])
            let other = try await client.signUp("otto", roles: ["bidder"])
            // Sold by buy now: at once, whatever the clock (a close timer would race a starved test).
            let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
            let created = try await client.send(
                .post, "/v1/auctions",
                json:
                    #"{"id":"lot-invoice","title":"Invoice","currency":"EUR","startingPrice":100000,"buyNowPrice":150000,"closesAt":"\#(closes)"}"#,
                token: seller)
            #expect(created.status == .created)
            let bought = try await client.send(
                .post, "/v1/auctions/lot-invoice/buy-now", json: #"{"bidId":"w1","price":150000,"currency":"EUR"}"#,
                token: winner)
            #expect(bought.status == .created, "\(String(buffer: bought.body))")
            var invoice: [String: Any] = [:]
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let mine = try await client.send(.get, "/v1/me/settlements", token: winner).json
                if let first = (mine["settlements"] as? [[String: Any]])?.first {
                    invoice = first
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(invoice["state"] as? String == "due")
            #expect(invoice["hammer"] as? Int == 150_000)
            #expect(invoice["buyersPremium"] as? Int == 39_000)
            #expect(invoice["total"] as? Int == 189_000)
            let others = try await client.send(.get, "/v1/me/settlements", token: other).json
            #expect((others["settlements"] as? [Any])?.isEmpty == true, "an invoice is its buyer's only")
            let notYours = try await client.send(
                .post, "/v1/me/settlements/lot-invoice/payment-method", json: #"{"paymentMethod":"pm_card_visa"}"#,
                token: other)
            #expect(notYours.status == .forbidden)
            #expect(notYours.json["code"] as? String == "not_the_buyer")
            let paid = try await client.send(
                .post, "/v1/me/settlements/lot-invoice/payment-method", json: #"{"paymentMethod":"pm_card_visa"}"#,
                token: winner)
            #expect(paid.status == .ok)
            #expect(paid.json["paymentMethod"] as? String == "pm_card_visa")
        }
    }

    @Test func webhooks_mustBeSigned_andUnknownOnesAreCountedNotApplied() async throws {
        try await GatewayHarness.run { client, _ in
            let body =
                #"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_unknown","amount_received":5,"metadata":{}}}}"#
            let unsigned = try await client.send(.post, "/v1/payments/webhook", json: body)
            #expect(unsigned.status == .badRequest)
            let forged = WebhookSignature.sign(
                Array(body.utf8), secret: "not the secret", at: Int64(Date().timeIntervalSince1970))
            let refused = try await client.send(
                .post, "/v1/payments/webhook", json: body, headers: [HTTPField.Name("Stripe-Signature")!: forged])
            #expect(refused.status == .badRequest)
            let signed = WebhookSignature.sign(
                Array(body.utf8), secret: GatewayHarness.webhookSecret, at: Int64(Date().timeIntervalSince1970))
            let accepted = try await client.send(
                .post, "/v1/payments/webhook", json: body, headers: [HTTPField.Name("Stripe-Signature")!: signed])
            #expect(accepted.status == .ok)
            let again = try await client.send(
                .post, "/v1/payments/webhook", json: body, headers: [HTTPField.Name("Stripe-Signature")!: signed])
            #expect(again.status == .ok)
            let metrics = String(buffer: try await client.send(.get, "/metrics").body)
            #expect(metrics.contains(#"artpay_payment_webhooks_total{outcome="rejected"} 2"#))
            #expect(metrics.contains(#"artpay_payment_webhooks_total{outcome="ignored"} 1"#))
            #expect(metrics.contains(#"artpay_payment_webhooks_total{outcome="duplicate"} 1"#))
        }
    }

    /// A delivery that could not be recorded (the owner failing over) is forgotten, so the
    /// provider's retry of it is handled, not dropped as a repeat; the oldest ids go first.
    @Test func aWebhookNotRecorded_isHandledAgainWhenRedelivered() {
        let ledger = WebhookLedger()
        #expect(ledger.firstDelivery(of: "evt_1"))
        #expect(!ledger.firstDelivery(of: "evt_1"))
        ledger.forget("evt_1")
        #expect(ledger.firstDelivery(of: "evt_1"))
        for index in 0..<WebhookLedger.remembered { _ = ledger.firstDelivery(of: "evt_fill_\(index)") }
        #expect(ledger.firstDelivery(of: "evt_1"), "forgotten once \(WebhookLedger.remembered) newer ids came")
    }

    /// Runs `body` with a Stripe-shaped client of a sandbox provider listening on a free port.
    static func withSandbox(_ body: @Sendable (StripeShapedClient) async throws -> Void) async throws {
        let sandbox = SandboxProvider(secretKey: "sk_test_gateway", faults: .init(), seed: 3)
        try await Application(router: sandbox.router()).test(.live) { client in
            let port = try #require(client.port)
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                try await body(
                    StripeShapedClient(
                        baseURL: "http://127.0.0.1:\(port)", secretKey: "sk_test_gateway", http: http,
                        timeout: .seconds(5)))
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    /// A card is saved only once the provider knows it; the latest saved is the default; it is the
    /// caller's alone to list and remove.
    @Test func paymentMethods_areCheckedWithTheProvider_andKeptPerUser() async throws {
        try await Self.withSandbox { provider in
            try await GatewayHarness.run(provider: provider) { client, _ in
                let ann = try await client.signUp("ann")
                let ben = try await client.signUp("ben")
                let unknown = try await client.send(
                    .post, "/v1/me/payment-methods", json: #"{"paymentMethod":"pm_card_madeUp"}"#, token: ann)
                #expect(unknown.status == .unprocessableContent)
                #expect(unknown.json["code"] as? String == "payment_method_unknown")
                let malformed = try await client.send(
                    .post, "/v1/me/payment-methods", json: #"{"paymentMethod":"pm card"}"#, token: ann)
                #expect(malformed.status == .badRequest)
                let anonymous = try await client.send(
                    .post, "/v1/me/payment-methods", json: #"{"paymentMethod":"pm_card_visa"}"#)
                #expect(anonymous.status == .unauthorized)
                for method in ["pm_card_visa", "pm_card_amex"] {
                    let saved = try await client.send(
                        .post, "/v1/me/payment-methods", json: #"{"paymentMethod":"\#(method)"}"#, token: ann)
                    #expect(saved.status == .created, "\(String(buffer: saved.body))")
                }
                let listed = try await client.send(.get, "/v1/me/payment-methods", token: ann).json
                let methods = try #require(listed["paymentMethods"] as? [[String: Any]])
                #expect(methods.map { $0["id"] as? String } == ["pm_card_amex", "pm_card_visa"])
                #expect(methods.map { $0["last4"] as? String } == ["8431", "4242"])
                #expect(methods.map { $0["isDefault"] as? Bool } == [true, false])
                let bens = try await client.send(.get, "/v1/me/payment-methods", token: ben).json
                #expect((bens["paymentMethods"] as? [Any])?.isEmpty == true)
                #expect(
                    try await client.send(.delete, "/v1/me/payment-methods/pm_card_amex", token: ben).status
                        == .notFound)
                #expect(
                    try await client.send(.delete, "/v1/me/payment-methods/pm_card_amex", token: ann).status
                        == .noContent)
                let after = try await client.send(.get, "/v1/me/payment-methods", token: ann).json
                #expect((after["paymentMethods"] as? [[String: Any]])?.map { $0["id"] as? String } == ["pm_card_visa"])
            }
        }
    }

    @Test func withoutAProvider_savingAMethodSaysSo() async throws {
        try await GatewayHarness.run { client, _ in
            let ann = try await client.signUp("ann")
            let answer = try await client.send(
                .post, "/v1/me/payment-methods", json: #"{"paymentMethod":"pm_card_visa"}"#, token: ann)
            #expect(answer.status == .serviceUnavailable)
            #expect(answer.json["code"] as? String == "payments_not_configured")
        }
    }

    /// A buyer blocked after a default is refused at once — with the token they already hold — for
    /// bids and buy-now, until an admin lifts the block; then the same token bids again.
    @Test func aBlockedBuyer_cannotBid_untilAnAdminLiftsTheBlock() async throws {
        try await GatewayHarness.run { client, harness in
            let root = try await client.logIn("root", "root-password")
            let seller = try await client.signUp("sam", roles: ["seller"])
            let dan = try await client.signUp("dan")
            let danId = try #require(try await client.send(.get, "/v1/me", token: dan).json["id"] as? String)
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-blocked"), token: seller)
                    .status == .created)
            let bid = #"{"bidId":"dan-1","maximum":2000,"currency":"EUR"}"#
            #expect(try await client.send(.post, "/v1/auctions/lot-blocked/bids", json: bid, token: dan).status == .created)

            // What the lot's settlement owner does after the deadline: block, then announce.
            let user = UserID(rawValue: danId)!
            #expect(
                try await harness.api.users.blockFromBidding(
                    user, defaultedOn: AuctionID(rawValue: "lot-unpaid")!, at: Timestamp(millisecondsSinceEpoch: 1)))
            await harness.api.node.announceUserChange(user)

            let refused = try await client.send(
                .post, "/v1/auctions/lot-blocked/bids", json: #"{"bidId":"dan-2","maximum":3000,"currency":"EUR"}"#,
                token: dan)
            #expect(refused.status == .forbidden)
            #expect(refused.json["code"] as? String == "bidding_blocked")
            let buyNow = try await client.send(
                .post, "/v1/auctions/lot-blocked/buy-now", json: #"{"bidId":"dan-3","price":5000,"currency":"EUR"}"#,
                token: dan)
            #expect(buyNow.json["code"] as? String == "bidding_blocked")
            #expect(try await client.send(.get, "/v1/me", token: dan).json["blockedFromBidding"] as? Bool == true)

            #expect(try await client.send(.delete, "/v1/users/\(danId)/bidding-blocks", token: dan).status == .forbidden)
            let blocks = try await client.send(.get, "/v1/users/\(danId)/bidding-blocks", token: root).json
            #expect(blocks["blockedFromBidding"] as? Bool == true)
            #expect((blocks["blocks"] as? [[String: Any]])?.first?["auctionId"] as? String == "lot-unpaid")
            let lifted = try await client.send(.delete, "/v1/users/\(danId)/bidding-blocks", token: root)
            #expect(lifted.status == .ok)
            #expect(lifted.json["blockedFromBidding"] as? Bool == false)
            let again = try await client.send(.delete, "/v1/users/\(danId)/bidding-blocks", token: root)
            #expect(again.status == .notFound)
            #expect(again.json["code"] as? String == "no_bidding_block")
            #expect(
                try await client.send(.delete, "/v1/users/u-nobody/bidding-blocks", token: root).status == .notFound)

            let bidsAgain = try await client.send(
                .post, "/v1/auctions/lot-blocked/bids", json: #"{"bidId":"dan-4","maximum":3000,"currency":"EUR"}"#,
                token: dan)
            #expect(bidsAgain.status == .created, "\(String(buffer: bidsAgain.body))")
        }
    }

    /// A late webhook about an earlier attempt changes nothing: the decline of attempt 1, delivered
    /// (to another node, as a new delivery) while attempt 2 is being authorized, must not decline
    /// attempt 2 — that authorization would be held at the provider with no settlement knowing it.
    /// The chaos run found this.
    @Test func aLateWebhookAboutAnEarlierAttempt_changesNothing() async throws {
        try await GatewayHarness.run { client, harness in
            let seller = try await client.signUp("sela", roles: ["seller"])
            let buyer = try await client.signUp("bea")
            let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
            _ = try await client.send(
                .post, "/v1/auctions",
                json:
                    #"{"id":"lot-late","title":"Late","currency":"EUR","startingPrice":1000,"buyNowPrice":5000,"closesAt":"\#(closes)"}"#,
                token: seller)
            let bought = try await client.send(
                .post, "/v1/auctions/lot-late/buy-now", json: #"{"bidId":"b1","price":5000,"currency":"EUR"}"#,
                token: buyer)
            #expect(bought.status == .created)
            let node = harness.api.node
            let lot = AuctionID(rawValue: "lot-late")!
            func settlement() -> Settlement? { node.readModel.settlement(of: lot) }
            func pay(_ card: String, attempt: Int) async throws {
                try await eventually("the lot can be paid") { settlement()?.inFlight == nil && settlement() != nil }
                let chosen = try await client.send(
                    .post, "/v1/me/settlements/lot-late/payment-method", json: #"{"paymentMethod":"\#(card)"}"#,
                    token: buyer)
                #expect(chosen.status == .ok || chosen.status == .accepted, "\(String(buffer: chosen.body))")
                #expect((try? await node.submit(.settle(.startAuthorization), to: lot).get()) != nil)
                try await eventually("attempt \(attempt) is in flight") { settlement()?.inFlight?.attempt == attempt }
            }
            func webhook(_ id: String, _ type: String, intent: String, attempt: Int) async throws -> TestResponse {
                let body =
                    #"{"id":"\#(id)","type":"\#(type)","data":{"object":{"id":"\#(intent)","metadata":{"auction":"lot-late","attempt":"\#(attempt)"},"last_payment_error":{"code":"card_declined"}}}}"#
                let signature = WebhookSignature.sign(
                    Array(body.utf8), secret: GatewayHarness.webhookSecret, at: Int64(Date().timeIntervalSince1970))
                return try await client.send(
                    .post, "/v1/payments/webhook", json: body, headers: [HTTPField.Name("Stripe-Signature")!: signature])
            }

            try await pay("pm_card_chargeDeclined", attempt: 1)
            #expect(try await webhook("evt_1", "payment_intent.payment_failed", intent: "pi_1", attempt: 1).status == .ok)
            try await eventually("attempt 1 is declined") { settlement()?.phase == .declined }

            try await pay("pm_card_visa", attempt: 2)
            let late = try await webhook("evt_1_again", "payment_intent.payment_failed", intent: "pi_1", attempt: 1)
            #expect(late.status == .ok)
            #expect(settlement()?.phase == .authorizing)
            #expect(settlement()?.inFlight?.attempt == 2)
            #expect(
                try await webhook("evt_2", "payment_intent.amount_capturable_updated", intent: "pi_2", attempt: 2).status
                    == .ok)
            try await eventually("attempt 2 is authorized") { settlement()?.phase == .authorized }
            #expect(settlement()?.intent?.rawValue == "pi_2")
            let metrics = String(buffer: try await client.send(.get, "/metrics").body)
            #expect(metrics.contains(#"artpay_payment_webhooks_total{outcome="ignored"} 1"#), "the late one")
        }
    }
}
