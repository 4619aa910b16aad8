public import AuctionCore
public import AuctionRuntime
import Foundation
import HTTPTypes
public import Hummingbird
import HummingbirdBcrypt
import NIOCore
public import Node
public import Payments
import Prometheus
public import Storage

/// The versioned HTTP API of a node (`/v1`): users and sessions, auctions, bids, live events.
/// Routes stay short: authentication, rate limits and error mapping are middleware; commands go
/// to the auction's owner through `ClusterNode`.
public struct GatewayAPI: Sendable {
    public struct Configuration: Sendable {
        /// bcrypt cost for new passwords (12 in production; tests use the minimum, 4).
        public var passwordCost: UInt8
        public var rateLimit: RateLimitMiddleware.Policy
        /// How long a handler may take to produce its response (streams only need their head).
        public var requestTimeout: Duration
        /// Caps on HTTP connections and deadlines on reading requests (``httpServer()``).
        public var connections: ConnectionLimits
        /// Caps on live streams (Server-Sent Events and WebSockets).
        public var streams: StreamLimits
        /// How long a node trusts its cached copy of a user's roles and token version when no
        /// change was announced (changes are announced to every node at once).
        public var userCacheAge: Duration
        /// When failed logins lock a username.
        public var loginLock: LoginLockPolicy
        /// How many API requests a node handles at once before it sheds load.
        public var admission: AdmissionLimits
        /// The money rules new lots are sold under (fixed into each lot's terms when it is created).
        public var fees: FeeSchedule
        /// Secrets the payment provider signs its webhooks with (several during a rotation); no
        /// webhook verifies without one.
        public var webhookSecrets: [String]
        /// Which other origins' pages may call the API (none by default).
        public var crossOrigin = CrossOriginPolicy()
        /// The HTTP port every node of the cluster serves on (one cluster shares it, as `artpay dev`
        /// and one node per host do): with the members' cluster hosts it gives their web addresses
        /// (`http` in `/v1/cluster`, where a page learns where to go on when its node dies), whose
        /// pages may call this node. nil: members are listed without one.
        public var clusterHTTPPort: Int?
        /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>` (what a
        /// Prometheus scrape config sends); unset, it is public but rate limited per address.
        public var metricsBearerToken: String?

        public init(
            passwordCost: UInt8 = 12, rateLimit: RateLimitMiddleware.Policy = .init(capacity: 120, refillPerSecond: 20),
            requestTimeout: Duration = .seconds(15), connections: ConnectionLimits = .init(),
            streams: StreamLimits = .init(), userCacheAge: Duration = .seconds(10),
            loginLock: LoginLockPolicy = .init(),
            admission: AdmissionLimits = .init(), fees: FeeSchedule = .standard, webhookSecrets: [String] = []
        ) {
            self.passwordCost = passwordCost
            self.rateLimit = rateLimit
            self.requestTimeout = requestTimeout
            self.connections = connections
            self.streams = streams
            self.userCacheAge = userCacheAge
            self.loginLock = loginLock
            self.admission = admission
            self.fees = fees
            self.webhookSecrets = webhookSecrets
        }
    }

    let node: ClusterNode
    let users: any UserStore
    let events: any EventStore
    /// Webhook endpoints and their delivery log (the provider's webhooks are `webhooks`).
    let webhookEndpoints: any WebhookStore
    /// Finished lots' records, for analytics and the export.
    let archiveStore: any ArchiveStore
    let tokens: TokenAuthority
    let clock: any EngineClock
    let configuration: Configuration
    /// The process's Prometheus registry, the node's (one per process).
    let registry: PrometheusCollectorRegistry
    public let metrics: HTTPMetrics
    let process: ProcessMetrics
    /// The open HTTP connections of ``httpServer()``, against `configuration.connections`.
    public let connections: ConnectionCounter
    let streams: StreamLimiter
    let directory: UserDirectory
    let admission: AdmissionControl
    let webhooks: WebhookLedger
    let paddles: PaddleBook
    /// The payment provider, to check a payment method before it is saved (nil: none configured).
    let provider: (any PaymentProvider)?
    /// A bcrypt hash at the configured cost that no password matches: a login of an unknown user
    /// checks it, so it takes as long as one of a known user.
    let unknownUserHash: String

    public init(
        node: ClusterNode, users: any UserStore, events: any EventStore, webhooks: any WebhookStore,
        archive: any ArchiveStore, tokens: TokenAuthority, clock: any EngineClock,
        configuration: Configuration = .init(), provider: (any PaymentProvider)? = nil
    ) {
        self.provider = provider
        self.node = node
        self.registry = node.metricsRegistry
        self.users = users
        self.events = events
        self.webhookEndpoints = webhooks
        self.archiveStore = archive
        self.tokens = tokens
        self.clock = clock
        self.configuration = configuration
        self.connections = ConnectionCounter(limits: configuration.connections, registry: registry)
        self.paddles = PaddleBook(store: users)
        self.process = ProcessMetrics(registry: registry)
        self.metrics = HTTPMetrics(registry: registry, factory: node.metricsFactory)
        self.streams = StreamLimiter(limits: configuration.streams)
        let directory = UserDirectory(users: users, maximumAge: configuration.userCacheAge)
        self.directory = directory
        self.admission = AdmissionControl(limits: configuration.admission, registry: registry)
        self.webhooks = WebhookLedger(registry: registry)
        node.onUserChange { directory.forget($0) }
        let policy = ForwardedCommandPolicy(directory: directory, users: users)
        node.checkForwardedCommands { issuer, command in await policy.check(issuer, command) }
        self.unknownUserHash = Bcrypt.hash(UUID().uuidString + UUID().uuidString, cost: configuration.passwordCost)
    }

    /// What a node serves over HTTP: the router under the cross-origin policy, each request within
    /// the request timeout.
    public func responder(
        isReady: @escaping @Sendable () async -> Bool
    ) -> RequestDeadline<CrossOrigin<Router<GatewayContext>>> {
        let node = self.node
        let port = configuration.clusterHTTPPort
        return RequestDeadline(
            CrossOrigin(
                router(isReady: isReady), policy: configuration.crossOrigin,
                memberOrigins: {
                    Set(node.memberAddressesSeen.values.compactMap { Self.webAddress(of: $0, port: port) })
                }),
            limit: configuration.requestTimeout)
    }

    /// The router with every route and middleware of the API, health and metrics included.
    public func router(isReady: @escaping @Sendable () async -> Bool) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: MetricsMiddleware(metrics: metrics))
        router.add(middleware: ProblemMiddleware())
        addOperationsRoutes(to: router, isReady: isReady)
        WebAssets.route(router)
        // The provider's webhooks carry their own signature instead of a user's token.
        router.post("/v1/payments/webhook", use: providerWebhook)
        let api = router.group("/v1")
            .add(middleware: AdmissionMiddleware(control: admission))
            .add(middleware: AuthenticationMiddleware(tokens: tokens, directory: directory))
            .add(middleware: RateLimitMiddleware(policy: configuration.rateLimit, gateways: { node.liveGateways }))
        addUserRoutes(to: api)
        addAuctionRoutes(to: api)
        addBidRoutes(to: api)
        addStreamRoutes(to: api)
        addLeaderboardRoutes(to: api)
        addSettlementRoutes(to: api)
        addAccountRoutes(to: api)
        addFeedRoutes(to: api)
        addWebhookRoutes(to: api)
        addAnalyticsRoutes(to: api)
        return router
    }

    // MARK: - Helpers

    /// The paddle scope of auction `id` (its sale, or the lot itself), or 404 when there is no such
    /// auction — nothing to stream or bid on then (a stream would cost a feed and a subscription for
    /// nothing). This node's read model may not have seen a new auction yet, so the log is asked
    /// before saying no.
    func paddleScope(of id: AuctionID) async throws(APIError) -> String {
        if let summary = node.readModel.summary(of: id) { return PaddleBook.scope(of: summary) }
        let first: [StoredEvent]
        do {
            first = try await events.events(of: id, after: 0, limit: 1)
        } catch .compacted {
            // An archived lot whose log starts at its snapshot: the lot's terms are there.
            do {
                return PaddleBook.scope(sale: try await events.load(id).snapshot?.state?.terms.saleId, auction: id)
            } catch {
                throw APIError.storeUnavailable
            }
        } catch {
            throw APIError.storeUnavailable
        }
        guard let created = first.first else { throw APIError.rejected(.auctionNotFound) }
        guard case .created(let terms) = created.event else { return PaddleBook.scope(sale: nil, auction: id) }
        return PaddleBook.scope(sale: terms.terms.saleId, auction: id)
    }

    /// The public views of `summaries` (bidders by paddle), with one paddle lookup for them all.
    func views(_ summaries: [AuctionSummary], for viewer: UserID? = nil, now: Timestamp) async -> [AuctionView] {
        var named: [String: Set<UserID>] = [:]
        for summary in summaries { named[PaddleBook.scope(of: summary), default: []].formUnion(summary.namedBidders) }
        let found = await paddles.paddles(named, viewer: viewer)
        return summaries.map {
            AuctionView($0, now: now, paddles: found[PaddleBook.scope(of: $0)] ?? [:], viewer: viewer)
        }
    }

    /// The public view of `summary` for `viewer` (with their own paddle, if they have one).
    func view(_ summary: AuctionSummary, for viewer: UserID?) async -> AuctionView {
        await views([summary], for: viewer, now: clock.now())[0]
    }

    static func body(_ request: Request, _ context: GatewayContext) async throws -> Data {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: context.maxUploadSize)
        } catch {
            throw APIError(
                .contentTooLarge, code: "body_too_large",
                detail: "Request bodies are at most \(context.maxUploadSize) bytes.")
        }
        return Data(buffer.readableBytesView)
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }

    /// One encoder for every answer (it is not changed after this, so sharing it is safe).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    static func unwrap(_ result: Result<CommandAccepted, EngineError>) throws(APIError) -> CommandAccepted {
        switch result {
        case .success(let accepted): return accepted
        case .failure(let error): throw APIError.engine(error)
        }
    }

    static func auctionId(_ context: GatewayContext) throws(APIError) -> AuctionID {
        guard let id = context.parameters.get("id").flatMap(AuctionID.init(rawValue:)) else {
            throw APIError.rejected(.auctionNotFound)
        }
        return id
    }

    static func bidId(_ raw: String) throws(APIError) -> BidID {
        guard let id = BidID(rawValue: raw) else {
            throw APIError.malformed("A bid id has 1 to 64 of A–Z a–z 0–9 _ - . : (not only dots)")
        }
        return id
    }

    static func money(_ amount: Int64, _ code: String) throws(APIError) -> Money {
        guard let currency = Currency(code: code) else { throw APIError.malformed("Unsupported currency '\(code)'.") }
        return Money(minorUnits: amount, currency: currency)
    }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
}
