import Foundation

/// The books of the sandbox payment provider: payment intents, refunds, the ledger of every
/// money movement, the idempotency records and the webhook events to deliver. Pure: the server
/// passes the time in, and faults are the server's business.
///
/// Idempotency, as Stripe's: a key's first request is saved with its answer (errors included) and
/// that answer is replayed for the same key with the same parameters; the same key with other
/// parameters is a 400 `idempotency_error`; a key whose first request still runs is a 409; keys
/// are forgotten after `keyLifetime`. A request refused before it did anything (an injected 500
/// "before recording") saves nothing, so its retry runs.
public struct SandboxBook: Sendable {
    public static let keyLifetime: Int64 = 24 * 3_600_000

    /// One answer: status and JSON body.
    public struct Answer: Hashable, Sendable {
        public var status: Int
        public var body: [String: JSONValue]
        public var replayed = false

        public init(status: Int, body: [String: JSONValue], replayed: Bool = false) {
            self.status = status
            self.body = body
            self.replayed = replayed
        }
    }

    public struct LedgerEntry: Hashable, Sendable, Codable {
        public enum Kind: String, Hashable, Sendable, Codable {
            case authorization, decline, capture, cancellation, refund
        }
        public var kind: Kind
        public var intent: String
        public var amount: Int64
        public var currency: String
        public var idempotencyKey: String?
        public var metadata: [String: String]
        public var atMilliseconds: Int64
    }

    /// A webhook event to deliver, Stripe-shaped: `{id, type, created, data: {object}}`.
    public struct Event: Hashable, Sendable {
        public var id: String
        public var type: String
        public var body: [String: JSONValue]
    }

    struct Intent: Hashable, Sendable {
        var id: String
        var amount: Int64
        var currency: String
        var status: String
        var paymentMethod: String
        var metadata: [String: String]
        var amountCapturable: Int64 = 0
        var amountReceived: Int64 = 0
        var amountRefunded: Int64 = 0
        var lastError: String?

        var json: [String: JSONValue] {
            var object: [String: JSONValue] = [
                "id": .string(id), "object": .string("payment_intent"), "amount": .int(amount),
                "amount_capturable": .int(amountCapturable), "amount_received": .int(amountReceived),
                "currency": .string(currency), "status": .string(status), "payment_method": .string(paymentMethod),
                "capture_method": .string("manual"),
                "metadata": .object(metadata.mapValues { .string($0) }),
            ]
            if let lastError { object["last_payment_error"] = .object(["code": .string(lastError)]) }
            return object
        }
    }

    private struct KeyRecord: Sendable {
        var fingerprint: String
        var answer: Answer?
        var createdAt: Int64
    }

    /// Test payment methods, as Stripe's test tokens.
    public static let succeedingMethods: Set<String> = ["pm_card_visa", "pm_card_mastercard", "pm_card_amex"]
    public static let decliningMethods: [String: String] = [
        "pm_card_chargeDeclined": "generic_decline",
        "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
        "pm_card_chargeDeclinedExpiredCard": "expired_card",
    ]

    private var intents: [String: Intent] = [:]
    private var keys: [String: KeyRecord] = [:]
    private var counter = 0
    /// Requests refused because their key was used before with other parameters.
    public private(set) var keyConflicts = 0
    public private(set) var ledger: [LedgerEntry] = []
    /// Events not yet handed to the deliverer.
    public private(set) var outbox: [Event] = []

    public init() {}

    // MARK: - Idempotency

    public enum Admission: Hashable, Sendable {
        case proceed
        case replay(Answer)
    }

    /// Registers `key` for a request with `fingerprint` (method, path and sorted parameters), or
    /// answers it from the saved record.
    public mutating func admit(key: String?, fingerprint: String, now: Int64) -> Admission {
        keys = keys.filter { now - $0.value.createdAt < Self.keyLifetime }
        guard let key else { return .proceed }
        guard let record = keys[key] else {
            keys[key] = KeyRecord(fingerprint: fingerprint, answer: nil, createdAt: now)
            return .proceed
        }
        guard record.fingerprint == fingerprint else {
            keyConflicts += 1
            return .replay(
                Self.problem(
                    400, type: "idempotency_error", code: "idempotency_key_reused",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.")
            )
        }
        guard var answer = record.answer else {
            return .replay(
                Self.problem(
                    409, type: "idempotency_error", code: "idempotency_key_in_use",
                    "There is currently another in-progress request using this idempotency key."))
        }
        answer.replayed = true
        return .replay(answer)
    }

    /// Saves `answer` as the key's result.
    public mutating func record(_ answer: Answer, for key: String?) {
        guard let key else { return }
        keys[key]?.answer = answer
    }

    /// Forgets a key whose request did nothing (refused before recording).
    public mutating func release(_ key: String?) {
        guard let key else { return }
        if keys[key]?.answer == nil { keys[key] = nil }
    }

    // MARK: - Operations

    public mutating func createIntent(_ fields: [String: String], key: String?, now: Int64) -> Answer {
        guard let amountText = fields["amount"], let amount = Int64(amountText), amount > 0 else {
            return Self.invalid("amount", "Invalid positive integer")
        }
        guard let currency = fields["currency"], currency.count == 3 else {
            return Self.invalid("currency", "Invalid currency")
        }
        guard fields["capture_method"] == "manual", fields["confirm"] == "true" else {
            return Self.invalid("capture_method", "The sandbox authorizes only: capture_method=manual, confirm=true")
        }
        guard let method = fields["payment_method"] else { return Self.invalid("payment_method", "Missing") }
        let metadata = Dictionary(
            uniqueKeysWithValues: fields.compactMap { name, value -> (String, String)? in
                guard name.hasPrefix("metadata["), name.hasSuffix("]") else { return nil }
                return (String(name.dropFirst("metadata[".count).dropLast()), value)
            })
        guard Self.succeedingMethods.contains(method) || Self.decliningMethods[method] != nil else {
            return Self.problem(
                400, type: "invalid_request_error", code: "resource_missing", "No such PaymentMethod: '\(method)'")
        }
        var intent = Intent(
            id: nextId("pi"), amount: amount, currency: currency, status: "requires_payment_method",
            paymentMethod: method, metadata: metadata)
        if let decline = Self.decliningMethods[method] {
            intent.lastError = decline
            intents[intent.id] = intent
            ledger.append(entry(.decline, intent, amount: amount, key: key, now: now))
            emit("payment_intent.payment_failed", intent, now: now)
            var answer = Self.problem(402, type: "card_error", code: "card_declined", "Your card was declined.")
            answer.body["error"]?.set("decline_code", .string(decline))
            answer.body["error"]?.set("payment_intent", .object(intent.json))
            return answer
        }
        intent.status = "requires_capture"
        intent.amountCapturable = amount
        intents[intent.id] = intent
        ledger.append(entry(.authorization, intent, amount: amount, key: key, now: now))
        emit("payment_intent.amount_capturable_updated", intent, now: now)
        return Answer(status: 200, body: intent.json)
    }

    public mutating func capture(_ id: String, _ fields: [String: String], key: String?, now: Int64) -> Answer {
        guard var intent = intents[id] else { return Self.missing(id) }
        guard intent.status == "requires_capture" else { return Self.unexpectedState(intent) }
        let amount = fields["amount_to_capture"].flatMap { Int64($0) } ?? intent.amountCapturable
        guard amount > 0, amount <= intent.amountCapturable else {
            return Self.invalid("amount_to_capture", "Must be at most the capturable \(intent.amountCapturable)")
        }
        intent.status = "succeeded"
        intent.amountReceived = amount
        intent.amountCapturable = 0
        intents[id] = intent
        ledger.append(entry(.capture, intent, amount: amount, key: key, now: now))
        emit("payment_intent.succeeded", intent, now: now)
        return Answer(status: 200, body: intent.json)
    }

    public mutating func cancel(_ id: String, key: String?, now: Int64) -> Answer {
        guard var intent = intents[id] else { return Self.missing(id) }
        guard intent.status == "requires_capture" || intent.status == "requires_payment_method" else {
            return Self.unexpectedState(intent)
        }
        let released = intent.amountCapturable
        intent.status = "canceled"
        intent.amountCapturable = 0
        intents[id] = intent
        ledger.append(entry(.cancellation, intent, amount: released, key: key, now: now))
        emit("payment_intent.canceled", intent, now: now)
        return Answer(status: 200, body: intent.json)
    }

    public mutating func refund(_ fields: [String: String], key: String?, now: Int64) -> Answer {
        guard let id = fields["payment_intent"] else { return Self.invalid("payment_intent", "Missing") }
        guard var intent = intents[id] else { return Self.missing(id) }
        guard intent.status == "succeeded" else { return Self.unexpectedState(intent) }
        let remaining = intent.amountReceived - intent.amountRefunded
        let amount = fields["amount"].flatMap { Int64($0) } ?? remaining
        guard amount > 0 else { return Self.invalid("amount", "Invalid positive integer") }
        guard amount <= remaining else {
            return Self.problem(
                400, type: "invalid_request_error", code: "amount_too_large",
                "Refund amount (\(amount)) is greater than unrefunded amount on charge (\(remaining))")
        }
        intent.amountRefunded += amount
        intents[id] = intent
        ledger.append(entry(.refund, intent, amount: amount, key: key, now: now))
        let refund: [String: JSONValue] = [
            "id": .string(nextId("re")), "object": .string("refund"), "amount": .int(amount),
            "payment_intent": .string(id), "status": .string("succeeded"), "currency": .string(intent.currency),
        ]
        let eventId = nextId("evt")
        outbox.append(
            Event(
                id: eventId, type: "charge.refunded",
                body: Self.eventBody(type: "charge.refunded", object: refund, id: eventId, now: now)))
        return Answer(status: 200, body: refund)
    }

    public func retrieve(_ id: String) -> Answer {
        guard let intent = intents[id] else { return Self.missing(id) }
        return Answer(status: 200, body: intent.json)
    }

    /// A test payment method as Stripe describes it (brand and last four digits of its test card).
    public static func paymentMethod(_ id: String) -> Answer {
        let cards: [String: (brand: String, last4: String)] = [
            "pm_card_visa": ("visa", "4242"), "pm_card_mastercard": ("mastercard", "4444"),
            "pm_card_amex": ("amex", "8431"), "pm_card_chargeDeclined": ("visa", "0002"),
            "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995"),
            "pm_card_chargeDeclinedExpiredCard": ("visa", "0069"),
        ]
        guard let card = cards[id] else {
            return problem(
                404, type: "invalid_request_error", code: "resource_missing", "No such PaymentMethod: '\(id)'")
        }
        return Answer(
            status: 200,
            body: [
                "id": .string(id), "object": .string("payment_method"), "type": .string("card"),
                "card": .object(["brand": .string(card.brand), "last4": .string(card.last4)]),
            ])
    }

    /// Hands the pending webhook events to the deliverer.
    public mutating func takeOutbox() -> [Event] {
        defer { outbox = [] }
        return outbox
    }

    // MARK: - Helpers

    private mutating func nextId(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)_sandbox\(counter)"
    }

    private func entry(_ kind: LedgerEntry.Kind, _ intent: Intent, amount: Int64, key: String?, now: Int64)
        -> LedgerEntry
    {
        LedgerEntry(
            kind: kind, intent: intent.id, amount: amount, currency: intent.currency, idempotencyKey: key,
            metadata: intent.metadata, atMilliseconds: now)
    }

    private mutating func emit(_ type: String, _ intent: Intent, now: Int64) {
        let id = nextId("evt")
        outbox.append(
            Event(id: id, type: type, body: Self.eventBody(type: type, object: intent.json, id: id, now: now)))
    }

    private static func eventBody(type: String, object: [String: JSONValue], id: String, now: Int64)
        -> [String: JSONValue]
    {
        [
            "id": .string(id), "object": .string("event"), "type": .string(type), "created": .int(now / 1_000),
            "data": .object(["object": .object(object)]),
        ]
    }

    static func problem(_ status: Int, type: String, code: String, _ message: String) -> Answer {
        Answer(
            status: status,
            body: ["error": .object(["type": .string(type), "code": .string(code), "message": .string(message)])])
    }

    private static func invalid(_ parameter: String, _ message: String) -> Answer {
        var answer = problem(400, type: "invalid_request_error", code: "parameter_invalid", "\(parameter): \(message)")
        answer.body["error"]?.set("param", .string(parameter))
        return answer
    }

    private static func missing(_ id: String) -> Answer {
        problem(404, type: "invalid_request_error", code: "resource_missing", "No such payment_intent: '\(id)'")
    }

    private static func unexpectedState(_ intent: Intent) -> Answer {
        problem(
            400, type: "invalid_request_error", code: "payment_intent_unexpected_state",
            "This PaymentIntent's status is \(intent.status).")
    }
}

/// A JSON value with a stable, sorted rendering (the sandbox's answers and webhook bodies).
public enum JSONValue: Hashable, Sendable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case object([String: JSONValue])
    case array([JSONValue])

    mutating func set(_ key: String, _ value: JSONValue) {
        guard case .object(var fields) = self else { return }
        fields[key] = value
        self = .object(fields)
    }

    var foundation: Any {
        switch self {
        case .string(let text): text
        case .int(let number): number
        case .bool(let flag): flag
        case .object(let fields): fields.mapValues(\.foundation)
        case .array(let items): items.map(\.foundation)
        }
    }

    public static func render(_ object: [String: JSONValue]) -> [UInt8] {
        let any = object.mapValues(\.foundation)
        return Array((try? JSONSerialization.data(withJSONObject: any, options: [.sortedKeys])) ?? Data("{}".utf8))
    }
}
