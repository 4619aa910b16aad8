import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Payments
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
}
