import ArtPayClient
import ClusterCore
import HTTPTypes
public import Hummingbird
import Logging
import Node
import Storage
import Synchronization

/// Turns every error into a problem+json answer: API errors as they are, Hummingbird's HTTP
/// errors (unknown route, body too large) with a code for their status, anything else a 500
/// with nothing internal in it (the error is logged).
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let code: String
            switch error.status {
            case .notFound: code = "not_found"
            case .contentTooLarge: code = "body_too_large"
            case .methodNotAllowed: code = "method_not_allowed"
            case .badRequest: code = "malformed_request"
            default: code = "http_\(error.status.code)"
            }
            throw APIError(error.status, code: code, detail: error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            throw APIError(.internalServerError, code: "internal_error", detail: "Something went wrong on our side.")
        }
    }
}

/// Names each request: the client's `X-Request-ID` when it is a valid one (`RequestTrace.isValid`),
/// else a new one. The id is echoed in the answer (errors too), put in the request's log metadata
/// (`request`) and, through `RequestTrace`, carried in a forwarded command to the owner, which logs
/// it: one bid can be followed on every node it crosses.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let id =
            request.headers[.xRequestID].flatMap { RequestTrace.isValid($0) ? $0 : nil }
            ?? String(UInt64.random(in: .min ... .max), radix: 16)
        var context = context
        context.logger[metadataKey: "request"] = "\(id)"
        var response: Response
        do {
            response = try await RequestTrace.$id.withValue(id) { try await next(request, context) }
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.xRequestID] = id
        return response
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-ID")!
}

/// Builds the router's responder wrapped in a ``DeadlineResponder``: what a node serves.
public struct RequestDeadline<Builder: HTTPResponderBuilder>: HTTPResponderBuilder
where Builder.Responder.Context: RequestContext {
    let builder: Builder
    let limit: Duration
    let maximumBodySize: Int

    /// - Parameters:
    ///   - limit: how long a request may take from its head to its response head.
    ///   - maximumBodySize: bodies are read in full before routing, at most this many bytes.
    public init(_ builder: Builder, limit: Duration, maximumBodySize: Int = 64 * 1_024) {
        self.builder = builder
        self.limit = limit
        self.maximumBodySize = maximumBodySize
    }

    public func buildResponder() -> DeadlineResponder<Builder.Responder> {
        DeadlineResponder(inner: builder.buildResponder(), limit: limit, maximumBodySize: maximumBodySize)
    }
}

/// Answers 503 `request_timeout` (with `Retry-After`) when the handler has not produced its
/// response head within `limit`, and cancels it: a stuck store or a peer that never answers must
/// not hold a connection and a client forever. The answer comes on time even when the handler
/// ignores the cancellation — it is left behind, so it runs on the request's body read in full
/// beforehand (bodies are small), never on the connection. Streams are not cut: their handlers
/// return the response head at once and the body flows afterwards. A bid cut off this way may
/// still have been accepted; the client retries with the same bid id and gets its outcome.
public struct DeadlineResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context: RequestContext {
    public typealias Context = Inner.Context
    let inner: Inner
    let limit: Duration
    let maximumBodySize: Int

    public func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maximumBodySize)
        } catch {
            // Outside the router: answered here, not by the router's error handling.
            return try APIError(
                .contentTooLarge, code: "body_too_large", detail: "Request bodies are at most \(maximumBodySize) bytes."
            ).response(from: request, context: context)
        }
        request.body = RequestBody(buffer: body)
        let inner = self.inner
        let bufferedRequest = request
        do {
            return try await withDeadline(limit - (ContinuousClock.now - started)) {
                try await inner.respond(to: bufferedRequest, context: context)
            }
        } catch is DeadlineExceeded {
            return try APIError(
                .serviceUnavailable, code: "request_timeout",
                detail:
                    "The request took longer than \(limit.wholeMilliseconds) ms and was stopped; retry (a bid with the same bid id).",
                headers: [.retryAfter: "1"]
            ).response(from: request, context: context)
        }
    }
}

/// Reads `Authorization: Bearer <jwt>`; a valid token of a user who still exists, with the user's
/// current token version, sets the caller's identity (with the roles the store has now); any other
/// token is a 401 naming why. Requests without a token continue anonymously (routes that need a
/// caller refuse them).
public struct AuthenticationMiddleware: RouterMiddleware {
    let tokens: TokenAuthority
    /// `nil` only in the benchmark's baseline servers, which have no users table: signature only.
    let directory: UserDirectory?

    init(tokens: TokenAuthority, directory: UserDirectory) {
        self.tokens = tokens
        self.directory = directory
    }

    /// Checks signatures and expiry only — for the benchmark's baseline servers, which have no
    /// users; a node always checks the user's standing too.
    public init(signaturesOnly tokens: TokenAuthority) {
        self.tokens = tokens
        self.directory = nil
    }

    public func handle(
        _ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization] else { return try await next(request, context) }
        guard header.lowercased().hasPrefix("bearer ") else {
            throw APIError.invalidToken("Use the Bearer scheme.")
        }
        var context = context
        var identity: Identity
        do {
            identity = try await tokens.verify(String(header.dropFirst("bearer ".count)))
        } catch {
            throw APIError.invalidToken(error.detail)
        }
        guard let directory else {
            context.identity = identity
            return try await next(request, context)
        }
        let standing = try await directory.currentStanding(of: identity, fresh: false)
        identity.roles = standing.roles
        identity.blockedFromBidding = standing.blockedFromBidding
        context.identity = identity
        return try await next(request, context)
    }
}

/// A token bucket: `capacity` requests at once, refilled at `refillPerSecond`. Pure: the caller
/// gives the time.
public struct TokenBucket: Sendable {
    public let capacity: Double
    public let refillPerSecond: Double
    private(set) var tokens: Double
    private var updatedAt: ContinuousClock.Instant

    public init(capacity: Double, refillPerSecond: Double, now: ContinuousClock.Instant) {
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.tokens = capacity
        self.updatedAt = now
    }

    /// Takes `cost` tokens if there are that many; returns whether it did, how many more requests
    /// of that cost are left, and when there will be enough again.
    public mutating func take(now: ContinuousClock.Instant, cost: Double = 1) -> (
        allowed: Bool, remaining: Int, retryAfterSeconds: Int
    ) {
        let cost = min(max(cost, 1), capacity)
        let elapsed = now - updatedAt
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + seconds * refillPerSecond)
        updatedAt = now
        if tokens >= cost {
            tokens -= cost
            return (true, Int(tokens / cost), 0)
        }
        let wait = (cost - tokens) / refillPerSecond
        return (false, 0, max(1, Int(wait.rounded(.up))))
    }
}

/// Per-caller rate limits: authenticated callers by user id, others by client address. Answers
/// carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refused request gets a
/// 429 with `Retry-After`.
///
/// The policy is the cluster's: with `gateways` nodes serving HTTP, each request costs that many
/// tokens on the node it reaches, so a caller spreading requests over every node gets the policy's
/// rate in total, not once per node (a node's share, without asking the others on every request).
public final class RateLimitMiddleware: RouterMiddleware, Sendable {
    public struct Policy: Sendable {
        public var capacity: Int
        public var refillPerSecond: Double

        public init(capacity: Int, refillPerSecond: Double) {
            self.capacity = capacity
            self.refillPerSecond = refillPerSecond
        }
    }

    private let policy: Policy
    private let gateways: @Sendable () -> Int
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private static let maximumTracked = 100_000

    /// - Parameter gateways: how many nodes serve HTTP now (live members with the gateway role).
    public init(policy: Policy, gateways: @escaping @Sendable () -> Int = { 1 }) {
        self.policy = policy
        self.gateways = gateways
    }

    public func handle(
        _ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response
    ) async throws -> Response {
        let key = context.identity.map { "user:\($0.userId)" } ?? "ip:\(context.clientAddress)"
        let now = ContinuousClock.now
        let policy = self.policy
        let cost = Double(max(1, gateways()))
        let decision = buckets.withLock { buckets in
            if buckets.count > Self.maximumTracked { buckets.removeAll(keepingCapacity: true) }
            var bucket =
                buckets[key]
                ?? TokenBucket(
                    capacity: Double(policy.capacity), refillPerSecond: policy.refillPerSecond, now: now)
            let decision = bucket.take(now: now, cost: cost)
            buckets[key] = bucket
            return decision
        }
        let reset = Int((Double(policy.capacity) / policy.refillPerSecond).rounded(.up))
        let limit = max(1, Int(Double(policy.capacity) / cost))
        guard decision.allowed else {
            throw APIError(
                .tooManyRequests, code: RefusedBeforeWork.rateLimited.rawValue,
                detail: "Too many requests; retry in \(decision.retryAfterSeconds) s.",
                headers: [
                    .retryAfter: "\(decision.retryAfterSeconds)", .rateLimitLimit: "\(limit)",
                    .rateLimitRemaining: "0", .rateLimitReset: "\(decision.retryAfterSeconds)",
                ])
        }
        let limits: HTTPFields = [
            .rateLimitLimit: "\(limit)", .rateLimitRemaining: "\(decision.remaining)",
            .rateLimitReset: "\(reset)",
        ]
        do {
            var response = try await next(request, context)
            response.headers.append(contentsOf: limits)
            return response
        } catch var error as APIError {
            error.headers.append(contentsOf: limits)
            throw error
        }
    }
}

extension HTTPField.Name {
    static let rateLimitLimit = Self("RateLimit-Limit")!
    static let rateLimitRemaining = Self("RateLimit-Remaining")!
    static let rateLimitReset = Self("RateLimit-Reset")!
}
