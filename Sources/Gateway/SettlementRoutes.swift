import AuctionCore
import AuctionRuntime
import DequeModule
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Node
import Payments
import Prometheus
import Synchronization

/// A lot's settlement as its buyer (or an admin) sees it: the invoice, where payment stands, and
/// a second-chance offer. Never shown to other bidders.
struct SettlementView: Codable, Sendable {
    struct OfferView: Codable, Sendable {
        var bidderId: String
        var price: Int64
        var expiresAt: String
    }

    var auctionId: String
    var round: Int
    var state: String
    var buyerId: String?
    var currency: String?
    var hammer: Int64?
    var buyersPremium: Int64?
    var total: Int64?
    var sellerCommission: Int64?
    var sellerPayout: Int64?
    var dueBy: String?
    var paymentMethod: String?
    var paymentInProgress: Bool
    var captured: Int64?
    var refunded: Int64?
    var secondChanceOffer: OfferView?

    init(_ settlement: Settlement) {
        auctionId = settlement.auctionId.rawValue
        round = settlement.round
        state = settlement.phase?.rawValue ?? "none"
        buyerId = settlement.buyerId?.rawValue
        let invoice = settlement.invoice
        currency = invoice?.total.currency.code
        hammer = invoice?.hammer.minorUnits
        buyersPremium = invoice?.buyerPremium.minorUnits
        total = invoice?.total.minorUnits
        sellerCommission = invoice?.sellerCommission.minorUnits
        sellerPayout = invoice?.sellerPayout.minorUnits
        dueBy = settlement.dueBy.map(Timestamps.format)
        paymentMethod = settlement.paymentMethod?.rawValue
        paymentInProgress = settlement.inFlight != nil
        captured = settlement.captured?.minorUnits
        refunded = settlement.refunded?.minorUnits
        secondChanceOffer = settlement.offer.map {
            OfferView(
                bidderId: $0.bidderId.rawValue, price: $0.price.minorUnits, expiresAt: Timestamps.format($0.expiresAt))
        }
    }
}

struct SettlementList: Codable, Sendable {
    var settlements: [SettlementView]
}

struct PaymentMethodRequest: StrictRequest {
    static let fields: Set<String> = ["paymentMethod"]
    /// A provider token of a payment method (`pm_…`).
    var paymentMethod: String
}

struct SecondChanceAnswerRequest: StrictRequest {
    static let fields: Set<String> = ["accept"]
    var accept: Bool
}

struct RefundRequest: StrictRequest {
    static let fields: Set<String> = ["amount", "currency"]
    var amount: Int64
    var currency: String
}

extension GatewayAPI {
    /// `GET /v1/me/settlements`: the caller's invoices (as buyer, or with a second-chance offer).
    @Sendable func mySettlements(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let mine = node.readModel.settlements(of: caller.userId).map { settlement in
            var view = SettlementView(settlement)
            // An offer to someone else is not this buyer's business, nor the other way round.
            if settlement.offer?.bidderId != caller.userId { view.secondChanceOffer = nil }
            if settlement.buyerId != caller.userId { view.paymentMethod = nil }
            return view
        }
        return try Self.json(SettlementList(settlements: mine))
    }

    /// `POST /v1/me/settlements/{id}/payment-method`: pay (or try another method) with a provider
    /// token; the owner authorizes and captures it.
    @Sendable func choosePaymentMethod(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let id = try Self.auctionId(context)
        let body = try PaymentMethodRequest.decode(try await Self.body(request, context))
        guard let method = PaymentMethodID(rawValue: body.paymentMethod) else {
            throw APIError.malformed("A payment method is a provider token of 1 to 64 of A–Z a–z 0–9 _ - . :")
        }
        return try await settle(.choosePaymentMethod(buyerId: caller.userId, method: method), on: id, by: caller)
    }

    /// `POST /v1/me/settlements/{id}/second-chance`: take or decline a second-chance offer.
    @Sendable func answerSecondChance(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let id = try Self.auctionId(context)
        let body = try SecondChanceAnswerRequest.decode(try await Self.body(request, context))
        if body.accept { try caller.requireMayBid() } else { try caller.require(.bidder) }
        return try await settle(.answerSecondChance(bidderId: caller.userId, accept: body.accept), on: id, by: caller)
    }

    /// `GET /v1/settlements?state=&limit=` (admin).
    @Sendable func settlements(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let query = request.uri.queryParameters
        var phase: Settlement.Phase?
        if let raw = query.get("state") {
            guard let parsed = Settlement.Phase(rawValue: raw) else {
                let states = Settlement.Phase.allCases.map(\.rawValue).joined(separator: ", ")
                throw APIError.malformed("'state' is one of \(states).")
            }
            phase = parsed
        }
        let limit = min(max(query.get("limit").flatMap(Int.init) ?? 100, 1), 1_000)
        return try Self.json(
            SettlementList(settlements: node.readModel.settlements(in: phase, limit: limit).map(SettlementView.init)))
    }

    /// `POST /v1/settlements/{id}/refund` (admin): refund part or all of what was captured.
    @Sendable func refundSettlement(_ request: Request, context: GatewayContext) async throws -> Response {
        let admin = try await freshAdmin(context)
        let id = try Self.auctionId(context)
        let body = try RefundRequest.decode(try await Self.body(request, context))
        return try await settle(.startRefund(amount: try Self.money(body.amount, body.currency)), on: id, by: admin)
    }

    /// `POST /v1/settlements/{id}/cancel` (admin): cancel before capture.
    @Sendable func cancelSettlement(_ request: Request, context: GatewayContext) async throws -> Response {
        let admin = try await freshAdmin(context)
        let id = try Self.auctionId(context)
        let body = try CancelRequest.decode(try await Self.body(request, context))
        return try await settle(.cancel(reason: body.reason), on: id, by: admin)
    }

    /// Runs `command` on the lot's owner, then answers with the settlement as of that step (this
    /// node's read model catches up within milliseconds; 202 with the seq if it has not yet).
    private func settle(_ command: SettlementCommand, on id: AuctionID, by caller: Identity) async throws -> Response {
        let accepted = try Self.unwrap(await node.submit(.settle(command), to: id, as: caller.issuer))
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline {
            if let summary = node.readModel.summary(of: id), summary.seq >= accepted.seq,
                let settlement = node.readModel.settlement(of: id)
            {
                return try Self.json(SettlementView(settlement))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        struct Pending: Codable { var auctionId: String, seq: Int64 }
        return try Self.json(Pending(auctionId: id.rawValue, seq: accepted.seq), status: .accepted)
    }

    // MARK: - Provider webhooks

    /// `POST /v1/payments/webhook`: the provider's events, signed (`Stripe-Signature`). Each is
    /// turned into the settlement step it reports and run on the lot's owner; a late, repeated or
    /// out-of-order event changes nothing there. Refused (400) when the signature does not verify;
    /// ignored and counted when it names no lot this cluster settles.
    @Sendable func providerWebhook(_ request: Request, context: GatewayContext) async throws -> Response {
        var buffer = try await request.body.collect(upTo: 256 * 1_024)
        let body = buffer.readBytes(length: buffer.readableBytes) ?? []
        do {
            try WebhookSignature.verify(
                body, headerValue: request.headers[HTTPField.Name(WebhookSignature.header)!],
                secrets: configuration.webhookSecrets,
                now: clock.now().millisecondsSinceEpoch / 1_000)
        } catch {
            webhooks.count(.rejected)
            throw APIError.malformed("The webhook signature does not verify: \(error).")
        }
        guard let event = try? JSONDecoder().decode(ProviderEvent.self, from: Data(body)) else {
            webhooks.count(.rejected)
            throw APIError.malformed("The webhook body is not a provider event.")
        }
        guard webhooks.firstDelivery(of: event.id) else {
            webhooks.count(.duplicate)
            return Response(status: .ok)
        }
        guard let (auction, command) = Self.settlementStep(for: event, in: node.readModel) else {
            webhooks.count(.ignored)
            return Response(status: .ok)
        }
        webhooks.count(.applied)
        // The provider retries until it gets a 2xx: a step the owner could not record now
        // (failing over) is answered 503, so it comes again.
        // The node vouches for the provider's word: it verified the signature.
        switch await node.submit(.settle(command), to: auction, as: .node) {
        case .success, .failure(.rejected):
            return Response(status: .ok)
        case .failure(let error):
            // Not recorded: the provider's next delivery of this event must not count as a repeat.
            webhooks.forget(event.id)
            throw APIError.engine(error)
        }
    }

    /// The settlement step a provider event reports, read against the lot's settlement as this node
    /// knows it (the owner checks the attempt again). An event names the call it is about — an
    /// authorization by the attempt in its intent's metadata, a later step by the round's intent —
    /// and is dropped when that is not the call in flight: a decline of attempt 1 that arrives
    /// while attempt 2 is being authorized must not decline attempt 2 (its authorization would be
    /// held at the provider with no settlement knowing it; the chaos run found this).
    static func settlementStep(for event: ProviderEvent, in readModel: AuctionReadModel) -> (
        AuctionID, SettlementCommand
    )? {
        let object = event.data.object
        let byMetadata = object.metadata?["auction"].flatMap(AuctionID.init(rawValue:))
        let intentId = object.paymentIntent ?? object.id
        guard
            let auction = byMetadata
                ?? readModel.settlement(withIntent: intentId)?.auctionId,
            let settlement = readModel.settlement(of: auction), let call = settlement.inFlight
        else { return nil }
        if call.operation == .authorize {
            guard object.metadata?["attempt"] == "\(call.attempt)" else { return nil }
        } else {
            guard let intent = settlement.intent, intent.rawValue == intentId else { return nil }
        }
        switch (event.type, call.operation) {
        case ("payment_intent.amount_capturable_updated", .authorize):
            guard let intent = PaymentIntentID(rawValue: object.id) else { return nil }
            return (auction, .authorizationSucceeded(attempt: call.attempt, intent: intent))
        case ("payment_intent.payment_failed", .authorize):
            return (
                auction,
                .authorizationDeclined(attempt: call.attempt, reason: object.lastPaymentError?.code ?? "card_declined")
            )
        case ("payment_intent.succeeded", .capture):
            guard let received = object.amountReceived, let currency = settlement.invoice?.total.currency else {
                return nil
            }
            return (
                auction,
                .captureSucceeded(attempt: call.attempt, amount: Money(minorUnits: received, currency: currency))
            )
        case ("payment_intent.canceled", .cancel):
            return (auction, .cancelSucceeded(attempt: call.attempt, reason: "cancelled by an admin"))
        case ("charge.refunded", .refund):
            guard object.amount == call.amount?.minorUnits else { return nil }
            return (auction, .refundSucceeded(attempt: call.attempt))
        default:
            return nil
        }
    }
}

/// The part of a Stripe-shaped event the settlement needs.
struct ProviderEvent: Decodable {
    struct Payload: Decodable {
        struct PaymentError: Decodable { var code: String? }
        var id: String
        var amount: Int64?
        var amountReceived: Int64?
        var metadata: [String: String]?
        var paymentIntent: String?
        var lastPaymentError: PaymentError?

        enum CodingKeys: String, CodingKey {
            case id, amount, metadata
            case amountReceived = "amount_received"
            case paymentIntent = "payment_intent"
            case lastPaymentError = "last_payment_error"
        }
    }

    struct DataField: Decodable { var object: Payload }

    var id: String
    var type: String
    var data: DataField
}

/// What this node did with provider webhooks, and the ids it has seen (the provider delivers at
/// least once: a repeat is acknowledged and dropped).
final class WebhookLedger: Sendable {
    enum Outcome: String, CaseIterable { case applied, duplicate, ignored, rejected }

    private struct State {
        var seen: Set<String> = []
        var order: Deque<String> = []
    }

    private let state = Mutex(State())
    /// `artpay_payment_webhooks_total` by outcome, in the node's registry (every outcome from start).
    private let counters: [Outcome: Counter]

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        let descriptor = MetricNameDescriptor(
            namespace: "artpay", subsystem: "payment", metricName: "webhooks", unitName: "total",
            helpText: "Provider webhooks by outcome.")
        counters = Dictionary(
            uniqueKeysWithValues: Outcome.allCases.map {
                ($0, registry.makeCounter(descriptor: descriptor, labels: [("outcome", $0.rawValue)]))
            })
    }

    /// How many event ids are remembered (the oldest are forgotten first); a repeat older than
    /// that is still harmless: the settlement refuses a step it already recorded.
    static let remembered = 10_000

    func firstDelivery(of id: String) -> Bool {
        state.withLock { state in
            guard state.seen.insert(id).inserted else { return false }
            state.order.append(id)
            while state.order.count > Self.remembered, let oldest = state.order.popFirst() {
                state.seen.remove(oldest)
            }
            return true
        }
    }

    /// Forgets `id`, so its next delivery is handled again (its first one was not recorded).
    func forget(_ id: String) { state.withLock { _ = $0.seen.remove(id) } }

    func count(_ outcome: Outcome) { counters[outcome]?.increment() }
}

extension GatewayAPI {
    /// Settlements: the buyer's side (their settlements, payment method, second chance) and the admin's (list, refund, cancel).
    func addSettlementRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/me/settlements", use: mySettlements)
        api.post("/me/settlements/:id/payment-method", use: choosePaymentMethod)
        api.post("/me/settlements/:id/second-chance", use: answerSecondChance)
        api.get("/settlements", use: settlements)
        api.post("/settlements/:id/refund", use: refundSettlement)
        api.post("/settlements/:id/cancel", use: cancelSettlement)
    }
}
