public import AsyncHTTPClient
public import AuctionCore
import Foundation
import NIOCore
import NIOHTTP1

/// The provider over HTTP, in the shape of Stripe's API: form-encoded requests, JSON answers,
/// `Authorization: Bearer <secret key>`, `Idempotency-Key` on every call that changes something,
/// and a deadline on every call (a call that times out may have taken effect: retry it with the
/// same key).
public struct StripeShapedClient: PaymentProvider {
    public let baseURL: String
    private let secretKey: String
    private let http: HTTPClient
    private let timeout: Duration

    public init(baseURL: String, secretKey: String, http: HTTPClient, timeout: Duration = .seconds(10)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.secretKey = secretKey
        self.http = http
        self.timeout = timeout
    }

    public func authorize(amount: Money, paymentMethod: PaymentMethodID, key: String, metadata: [String: String])
        async throws(ProviderError) -> PaymentIntent
    {
        var fields: [(String, String)] = [
            ("amount", "\(amount.minorUnits)"), ("currency", amount.currency.code.lowercased()),
            ("payment_method", paymentMethod.rawValue), ("capture_method", "manual"), ("confirm", "true"),
        ]
        fields += metadata.sorted { $0.key < $1.key }.map { ("metadata[\($0.key)]", $0.value) }
        return try await call(.POST, "/v1/payment_intents", fields: fields, key: key)
    }

    public func capture(intent: PaymentIntentID, amount: Money, key: String) async throws(ProviderError)
        -> PaymentIntent
    {
        try await call(
            .POST, "/v1/payment_intents/\(intent.rawValue)/capture",
            fields: [("amount_to_capture", "\(amount.minorUnits)")], key: key)
    }

    public func cancel(intent: PaymentIntentID, key: String) async throws(ProviderError) -> PaymentIntent {
        try await call(.POST, "/v1/payment_intents/\(intent.rawValue)/cancel", fields: [], key: key)
    }

    public func refund(intent: PaymentIntentID, amount: Money, key: String) async throws(ProviderError) -> Refund {
        try await call(
            .POST, "/v1/refunds", fields: [("payment_intent", intent.rawValue), ("amount", "\(amount.minorUnits)")],
            key: key)
    }

    public func retrieve(intent: PaymentIntentID) async throws(ProviderError) -> PaymentIntent {
        try await call(.GET, "/v1/payment_intents/\(intent.rawValue)", fields: [], key: nil)
    }

    public func retrieve(paymentMethod: PaymentMethodID) async throws(ProviderError) -> PaymentMethodDetails {
        try await call(.GET, "/v1/payment_methods/\(paymentMethod.rawValue)", fields: [], key: nil)
    }

    private func call<Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, fields: [(String, String)], key: String?
    ) async throws(ProviderError) -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(secretKey)")
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        if method == .POST {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: FormEncoding.encode(fields)))
        }
        let status: Int
        let headers: HTTPHeaders
        let body: ByteBuffer
        do {
            let response = try await http.execute(request, timeout: .milliseconds(timeout.wholeMilliseconds))
            status = Int(response.status.code)
            headers = response.headers
            body = try await response.body.collect(upTo: 1 << 20)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw .timedOut
        } catch {
            throw .transport("\(error)")
        }
        let bytes = Data(body.readableBytesView)
        if (200..<300).contains(status) {
            guard let answer = try? JSONDecoder().decode(Answer.self, from: bytes) else {
                throw .transport("an answer that does not decode (\(status))")
            }
            return answer
        }
        let problem = (try? JSONDecoder().decode(ProblemEnvelope.self, from: bytes))?.error
        let code = problem?.declineCode ?? problem?.code ?? "unknown"
        let message = problem?.message ?? ""
        switch status {
        case 402 where problem?.type == "card_error":
            throw .declined(code: code, message: message)
        case 400 where problem?.type == "idempotency_error":
            throw .idempotencyConflict(message)
        case 409:
            throw .keyInUse
        case 429:
            throw .rateLimited(retryAfterSeconds: headers.first(name: "Retry-After").flatMap { Int($0) })
        case 500...:
            throw .serverError(status: status)
        default:
            throw .refused(status: status, code: code, message: message)
        }
    }

    private struct ProblemEnvelope: Decodable {
        struct Problem: Decodable {
            var type: String?
            var code: String?
            var declineCode: String?
            var message: String?

            enum CodingKeys: String, CodingKey {
                case type, code, message
                case declineCode = "decline_code"
            }
        }

        var error: Problem
    }
}
