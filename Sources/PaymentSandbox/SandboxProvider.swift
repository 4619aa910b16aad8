public import AsyncHTTPClient
import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import Payments
import Synchronization

/// Faults the sandbox injects, switchable at runtime (`POST /v1/sandbox/faults`). Rates are
/// per request, drawn from a seeded generator so a run can be replayed.
public struct SandboxFaults: Hashable, Sendable, Codable {
    /// Added to every answer.
    public var latencyMilliseconds = 0
    /// A money call takes effect and is saved, but no answer comes back before the client's
    /// deadline: the charge happened and the caller does not know.
    public var timeoutAfterChargeRate = 0.0
    /// 500 before anything is recorded: the retry runs afresh.
    public var errorBeforeRate = 0.0
    /// 500 after the call took effect and its answer was saved: the retry gets the saved answer.
    public var errorAfterRate = 0.0
    /// 429 with `Retry-After: 1`, nothing recorded.
    public var rateLimitRate = 0.0
    /// Every call answers 503 until this time (unix milliseconds).
    public var outageUntilMilliseconds: Int64 = 0
    /// Webhooks wait this long before delivery; duplicated at this rate; delivered out of order.
    public var webhookDelayMilliseconds = 0
    public var webhookDuplicateRate = 0.0
    public var webhookReorder = false
    /// How long a "timed out" call holds its answer back.
    public var hangMilliseconds = 15_000

    public init() {}

    /// Any subset of the fields; the others keep their defaults (no fault).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        latencyMilliseconds = try value(.latencyMilliseconds, 0)
        timeoutAfterChargeRate = try value(.timeoutAfterChargeRate, 0)
        errorBeforeRate = try value(.errorBeforeRate, 0)
        errorAfterRate = try value(.errorAfterRate, 0)
        rateLimitRate = try value(.rateLimitRate, 0)
        outageUntilMilliseconds = try value(.outageUntilMilliseconds, 0)
        webhookDelayMilliseconds = try value(.webhookDelayMilliseconds, 0)
        webhookDuplicateRate = try value(.webhookDuplicateRate, 0)
        webhookReorder = try value(.webhookReorder, false)
        hangMilliseconds = try value(.hangMilliseconds, 15_000)
    }
}

/// The sandbox payment provider served over HTTP: a Stripe-shaped subset (PaymentIntents with
/// manual capture, capture, cancel, refunds, retrieve), idempotency exactly like Stripe's, test
/// payment methods, signed webhooks, a ledger of every money movement (`GET /v1/sandbox/ledger`)
/// and seeded faults. `artpay psp` runs it; `artpay dev` starts one; the tests start their own.
public final class SandboxProvider: Sendable {
    public struct Webhook: Sendable {
        public var url: String
        public var secret: String

        public init(url: String, secret: String) {
            self.url = url
            self.secret = secret
        }
    }

    private let book = Mutex(SandboxBook())
    private let faults: Mutex<SandboxFaults>
    private let random: Mutex<SplitMix>
    private let secretKey: String
    private let webhooks: Mutex<[Webhook]>
    private let injected = Mutex<[String: Int]>([:])
    private let logger: Logger

    public init(
        secretKey: String, faults: SandboxFaults = .init(), seed: UInt64 = 1, webhooks: [Webhook] = [],
        logger: Logger = Logger(label: "artpay.psp")
    ) {
        self.secretKey = secretKey
        self.faults = Mutex(faults)
        self.random = Mutex(SplitMix(seed: seed))
        self.webhooks = Mutex(webhooks)
        self.logger = logger
    }

    public var ledger: [SandboxBook.LedgerEntry] { book.withLock { $0.ledger } }

    /// Requests refused because their idempotency key was used before with other parameters.
    public var keyConflicts: Int { book.withLock { $0.keyConflicts } }

    /// Faults injected so far, by kind (`outage`, `rate_limit`, `error_before`, `error_after`,
    /// `timeout_after_charge`, `webhook_duplicate`): what a chaos run reports.
    public var faultsInjected: [String: Int] { injected.withLock { $0 } }

    private func count(_ kind: String) { injected.withLock { $0[kind, default: 0] += 1 } }

    public var currentFaults: SandboxFaults {
        get { faults.withLock { $0 } }
        set { faults.withLock { $0 = newValue } }
    }

    public func addWebhook(_ webhook: Webhook) { webhooks.withLock { $0.append(webhook) } }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000).rounded()) }

    private func roll(_ rate: Double) -> Bool {
        guard rate > 0 else { return false }
        return random.withLock { $0.nextUnit() } < rate
    }

    // MARK: - HTTP

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/health") { _, _ in HTTPResponse.Status.ok }
        router.post("/v1/payment_intents") { request, context in
            try await self.serve(request, context) { book, fields, key, now in
                book.createIntent(fields, key: key, now: now)
            }
        }
        router.post("/v1/payment_intents/:id/capture") { request, context in
            let id = try context.parameters.require("id")
            return try await self.serve(request, context) { book, fields, key, now in
                book.capture(id, fields, key: key, now: now)
            }
        }
        router.post("/v1/payment_intents/:id/cancel") { request, context in
            let id = try context.parameters.require("id")
            return try await self.serve(request, context) { book, _, key, now in book.cancel(id, key: key, now: now) }
        }
        router.post("/v1/refunds") { request, context in
            try await self.serve(request, context) { book, fields, key, now in book.refund(fields, key: key, now: now) }
        }
        router.get("/v1/payment_intents/:id") { request, context in
            let id = try context.parameters.require("id")
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            return Self.response(self.book.withLock { $0.retrieve(id) })
        }
        router.get("/v1/payment_methods/:id") { request, context in
            let id = try context.parameters.require("id")
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            return Self.response(SandboxBook.paymentMethod(id))
        }
        router.get("/v1/sandbox/ledger") { request, _ in
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            let entries = self.ledger
            let data = (try? JSONEncoder().encode(["data": entries])) ?? Data()
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(data: data)))
        }
        router.get("/v1/sandbox/stats") { request, _ in
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            struct Stats: Codable {
                var faultsInjected: [String: Int]
                var keyConflicts: Int
                var ledgerEntries: Int
            }
            let stats = Stats(
                faultsInjected: self.faultsInjected, keyConflicts: self.keyConflicts, ledgerEntries: self.ledger.count)
            let data = (try? JSONEncoder().encode(stats)) ?? Data()
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(data: data)))
        }
        router.get("/v1/sandbox/faults") { request, _ in
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            let data = (try? JSONEncoder().encode(self.currentFaults)) ?? Data()
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(data: data)))
        }
        router.post("/v1/sandbox/faults") { request, _ in
            guard self.authorized(request) else { return Self.response(Self.unauthorized) }
            let body = try await request.body.collect(upTo: 64 * 1_024)
            guard let faults = try? JSONDecoder().decode(SandboxFaults.self, from: Data(body.readableBytesView)) else {
                return Self.response(
                    SandboxBook.problem(400, type: "invalid_request_error", code: "parameter_invalid", "faults JSON"))
            }
            self.currentFaults = faults
            return Self.response(SandboxBook.Answer(status: 200, body: [:]))
        }
        return router
    }

    private static let unauthorized = SandboxBook.problem(
        401, type: "invalid_request_error", code: "api_key_invalid", "Invalid API Key provided.")

    private func authorized(_ request: Request) -> Bool {
        request.headers[.authorization] == "Bearer \(secretKey)"
    }

    /// One money call, through the faults, the idempotency records and the books.
    private func serve(
        _ request: Request, _ context: BasicRequestContext,
        _ operation: @Sendable (inout SandboxBook, [String: String], String?, Int64) -> SandboxBook.Answer
    ) async throws -> Response {
        guard authorized(request) else { return Self.response(Self.unauthorized) }
        let body = try await request.body.collect(upTo: 64 * 1_024)
        guard let fields = FormEncoding.decode(String(buffer: body)) else {
            return Self.response(
                SandboxBook.problem(400, type: "invalid_request_error", code: "parameter_invalid", "form body"))
        }
        let faults = currentFaults
        if faults.latencyMilliseconds > 0 { try await Task.sleep(for: .milliseconds(faults.latencyMilliseconds)) }
        let now = Self.now()
        if now < faults.outageUntilMilliseconds {
            count("outage")
            return Self.response(SandboxBook.problem(503, type: "api_error", code: "outage", "Service unavailable."))
        }
        if roll(faults.rateLimitRate) {
            count("rate_limit")
            var response = Self.response(
                SandboxBook.problem(429, type: "rate_limit_error", code: "rate_limit", "Too many requests."))
            response.headers[.retryAfter] = "1"
            return response
        }
        if roll(faults.errorBeforeRate) {
            count("error_before")
            return Self.response(SandboxBook.problem(500, type: "api_error", code: "internal", "An error occurred."))
        }
        let key = request.headers[HTTPField.Name("Idempotency-Key")!]
        let fingerprint =
            "\(request.method) \(request.uri.path) "
            + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let answer: SandboxBook.Answer = book.withLock { book in
            switch book.admit(key: key, fingerprint: fingerprint, now: now) {
            case .replay(let saved):
                return saved
            case .proceed:
                let answer = operation(&book, fields, key, now)
                book.record(answer, for: key)
                return answer
            }
        }
        if roll(faults.errorAfterRate) {
            count("error_after")
            return Self.response(SandboxBook.problem(500, type: "api_error", code: "internal", "An error occurred."))
        }
        if roll(faults.timeoutAfterChargeRate) {
            count("timeout_after_charge")
            // Hold the answer past the caller's deadline; the call has taken effect.
            try await Task.sleep(for: .milliseconds(faults.hangMilliseconds))
        }
        return Self.response(answer)
    }

    static func response(_ answer: SandboxBook.Answer) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if answer.replayed { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: JSONValue.render(answer.body))))
    }

    // MARK: - Webhooks

    /// Delivers webhook events until cancelled: signed, at least once, retried with backoff (up
    /// to `attempts` times each), with the configured delay, duplicates and reordering.
    public func deliverWebhooks(using http: HTTPClient, attempts: Int = 8) async {
        var pending: [(event: SandboxBook.Event, due: Int64, attempt: Int)] = []
        while !Task.isCancelled {
            let faults = currentFaults
            let now = Self.now()
            for event in book.withLock({ $0.takeOutbox() }) {
                pending.append((event, now + Int64(faults.webhookDelayMilliseconds), 0))
                if roll(faults.webhookDuplicateRate) {
                    count("webhook_duplicate")
                    pending.append((event, now + Int64(faults.webhookDelayMilliseconds) + 50, 0))
                }
            }
            var due = pending.filter { $0.due <= now }
            pending.removeAll { $0.due <= now }
            if faults.webhookReorder { due.reverse() }
            for item in due {
                if await deliver(item.event, using: http) { continue }
                guard item.attempt + 1 < attempts else {
                    logger.warning("gave up a webhook", metadata: ["event": "\(item.event.id)"])
                    continue
                }
                let backoff = Int64(250) << Int64(min(item.attempt, 6))
                pending.append((item.event, Self.now() + backoff, item.attempt + 1))
            }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }

    /// Tries the endpoints in turn until one accepts (several nodes behind one logical endpoint).
    private func deliver(_ event: SandboxBook.Event, using http: HTTPClient) async -> Bool {
        let body = JSONValue.render(event.body)
        for target in webhooks.withLock({ $0 }) {
            var request = HTTPClientRequest(url: target.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(
                name: WebhookSignature.header,
                value: WebhookSignature.sign(body, secret: target.secret, at: Self.now() / 1_000))
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await http.execute(request, timeout: .seconds(5))
                _ = try? await response.body.collect(upTo: 64 * 1_024)
                if (200..<300).contains(Int(response.status.code)) { return true }
            } catch {
                continue
            }
        }
        return false
    }
}

/// SplitMix64: a small seeded generator for fault rolls.
struct SplitMix: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
