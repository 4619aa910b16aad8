public import AuctionCore
import Foundation

/// A Stripe-shaped PaymentIntent: an authorization that is captured, cancelled or refunded later.
public struct PaymentIntent: Hashable, Sendable, Codable {
    public var id: String
    /// Minor units of `currency` (lower-case ISO 4217, as Stripe writes it).
    public var amount: Int64
    public var amountCapturable: Int64
    public var amountReceived: Int64
    public var currency: String
    /// `requires_payment_method` (declined), `requires_capture` (authorized), `succeeded`
    /// (captured) or `canceled`.
    public var status: String
    public var paymentMethod: String?
    public var metadata: [String: String]

    public init(
        id: String, amount: Int64, amountCapturable: Int64, amountReceived: Int64, currency: String, status: String,
        paymentMethod: String?, metadata: [String: String]
    ) {
        self.id = id
        self.amount = amount
        self.amountCapturable = amountCapturable
        self.amountReceived = amountReceived
        self.currency = currency
        self.status = status
        self.paymentMethod = paymentMethod
        self.metadata = metadata
    }

    enum CodingKeys: String, CodingKey {
        case id, amount, currency, status, metadata
        case amountCapturable = "amount_capturable"
        case amountReceived = "amount_received"
        case paymentMethod = "payment_method"
    }
}

public struct Refund: Hashable, Sendable, Codable {
    public var id: String
    public var amount: Int64
    public var paymentIntent: String
    public var status: String

    public init(id: String, amount: Int64, paymentIntent: String, status: String) {
        self.id = id
        self.amount = amount
        self.paymentIntent = paymentIntent
        self.status = status
    }

    enum CodingKeys: String, CodingKey {
        case id, amount, status
        case paymentIntent = "payment_intent"
    }
}

/// A payment method as the provider describes it (Stripe's `PaymentMethod`, card part): what a
/// buyer sees of a card they saved, never its number.
public struct PaymentMethodDetails: Hashable, Sendable, Codable {
    public struct Card: Hashable, Sendable, Codable {
        public var brand: String
        public var last4: String

        public init(brand: String, last4: String) {
            self.brand = brand
            self.last4 = last4
        }
    }

    public var id: String
    public var card: Card?

    public init(id: String, card: Card?) {
        self.id = id
        self.card = card
    }
}

/// Why a provider call did not succeed. Only the provider's own trouble counts against the
/// circuit breaker (`breakerResult`); a decline is the provider working.
public enum ProviderError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A business outcome: the card was declined (`card_declined`, `insufficient_funds` …).
    case declined(code: String, message: String)
    /// The provider refused the request for good (an unexpected state, an amount too large): the
    /// same request will be refused again.
    case refused(status: Int, code: String, message: String)
    /// The key was used before with other parameters: a bug on this side, never retried.
    case idempotencyConflict(String)
    /// A request with this key is still running at the provider: retry later with the same key.
    case keyInUse
    case rateLimited(retryAfterSeconds: Int?)
    case serverError(status: Int)
    /// No answer within the deadline: the call may or may not have taken effect.
    case timedOut
    case transport(String)

    public var description: String {
        switch self {
        case .declined(let code, let message): "declined (\(code)): \(message)"
        case .refused(let status, let code, let message): "refused \(status) \(code): \(message)"
        case .idempotencyConflict(let message): "idempotency conflict: \(message)"
        case .keyInUse: "the idempotency key is in use"
        case .rateLimited(let after): "rate limited (retry after \(after.map { "\($0) s" } ?? "?"))"
        case .serverError(let status): "server error \(status)"
        case .timedOut: "timed out"
        case .transport(let detail): "transport: \(detail)"
        }
    }

    /// Whether the same call, with the same key, should be sent again later.
    public var isRetryable: Bool {
        switch self {
        case .keyInUse, .rateLimited, .serverError, .timedOut, .transport: true
        case .declined, .refused, .idempotencyConflict: false
        }
    }

    public var breakerResult: CircuitBreaker.CallResult {
        switch self {
        case .declined, .refused, .idempotencyConflict, .keyInUse: .answered
        case .rateLimited: .rateLimited
        case .serverError(let status): .serverError(status: status)
        case .timedOut: .timedOut
        case .transport: .transportFailure
        }
    }
}

/// The payment provider as the settlement driver uses it: every call that moves money carries
/// the idempotency key the settlement logged before the call.
public protocol PaymentProvider: Sendable {
    /// Creates and confirms a PaymentIntent with `capture_method=manual`: an authorization.
    func authorize(amount: Money, paymentMethod: PaymentMethodID, key: String, metadata: [String: String])
        async throws(ProviderError) -> PaymentIntent
    func capture(intent: PaymentIntentID, amount: Money, key: String) async throws(ProviderError) -> PaymentIntent
    func cancel(intent: PaymentIntentID, key: String) async throws(ProviderError) -> PaymentIntent
    func refund(intent: PaymentIntentID, amount: Money, key: String) async throws(ProviderError) -> Refund
    func retrieve(intent: PaymentIntentID) async throws(ProviderError) -> PaymentIntent
    /// The provider's description of a payment method token: `refused` with `resource_missing`
    /// when the provider does not know it.
    func retrieve(paymentMethod: PaymentMethodID) async throws(ProviderError) -> PaymentMethodDetails
}
