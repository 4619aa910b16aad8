public import AuctionCore
public import AuctionRuntime
import ClusterCore
import Foundation
import HTTPTypes
public import Hummingbird
import HummingbirdBcrypt
import NIOCore
import NIOPosix
public import Node
public import Payments
import Prometheus
import ServiceLifecycle
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
        router.get("/health/live") { _, _ -> HTTPResponse.Status in .ok }
        router.get("/health/ready") { _, _ -> HTTPResponse.Status in await isReady() ? .ok : .serviceUnavailable }
        router.get("/v1/cluster") { _, _ -> Response in try await self.clusterView() }
        router.get("/v1/time") { _, _ -> Response in
            try Self.json(["now": self.clock.now().millisecondsSinceEpoch])
        }
        WebAssets.route(router)
        router.get("/openapi.json") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        let metricsAccess = MetricsAccess(bearerToken: configuration.metricsBearerToken)
        router.get("/metrics") { request, context -> Response in
            try metricsAccess.check(request, from: context.clientAddress)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: await self.metricsText())))
        }
        // The provider's webhooks carry their own signature instead of a user's token.
        router.post("/v1/payments/webhook", use: providerWebhook)
        let api = router.group("/v1")
            .add(middleware: AdmissionMiddleware(control: admission))
            .add(middleware: AuthenticationMiddleware(tokens: tokens, directory: directory))
            .add(middleware: RateLimitMiddleware(policy: configuration.rateLimit, gateways: { node.liveGateways }))
        api.post("/users", use: register)
        api.post("/sessions", use: login)
        api.get("/me", use: me)
        api.delete("/me/sessions", use: revokeOwnTokens)
        api.delete("/users/:id/sessions", use: revokeTokens)
        api.get("/me/notifications", use: notificationStream)
        api.put("/users/:id/roles", use: grantRoles)
        api.post("/auctions", use: createAuction)
        api.get("/auctions", use: listAuctions)
        api.get("/auctions/:id", use: auction)
        api.post("/auctions/:id/bids", use: bid)
        api.post("/auctions/:id/buy-now", use: buyNow)
        api.post("/auctions/:id/cancel", use: cancel)
        api.get("/auctions/:id/events", use: eventStream)
        api.get("/auctions/:id/leaderboard", use: leaderboard)
        api.get("/leaderboards/most-active", use: mostActive)
        api.get("/sales/:id/top", use: saleTop)
        api.get("/me/settlements", use: mySettlements)
        api.get("/me/bids", use: myBids)
        api.post("/me/settlements/:id/payment-method", use: choosePaymentMethod)
        api.post("/me/settlements/:id/second-chance", use: answerSecondChance)
        api.get("/me/payment-methods", use: myPaymentMethods)
        api.post("/me/payment-methods", use: savePaymentMethod)
        api.delete("/me/payment-methods/:method", use: removePaymentMethod)
        api.get("/users/:id/bidding-blocks", use: biddingBlocks)
        api.delete("/users/:id/bidding-blocks", use: liftBiddingBlocks)
        api.get("/settlements", use: settlements)
        api.post("/settlements/:id/refund", use: refundSettlement)
        api.post("/settlements/:id/cancel", use: cancelSettlement)
        api.get("/feed", use: feed)
        api.post("/webhooks", use: createWebhook)
        api.get("/webhooks", use: listWebhooks)
        api.get("/webhooks/:id", use: webhook)
        api.delete("/webhooks/:id", use: deleteWebhook)
        api.get("/webhooks/:id/deliveries", use: webhookDeliveries)
        api.post("/webhooks/:id/replay", use: replayWebhook)
        api.get("/analytics/lots", use: lotAnalytics)
        api.get("/analytics/bid-timing", use: bidTimingAnalytics)
        api.get("/analytics/export", use: exportArchive)
        api.get("/archive/auctions/:id", use: archivedAuction)
        return router
    }

    // MARK: - Users and sessions

    /// Creates the admin `username` with `password` unless a user of that name exists (the first
    /// admin of a new deployment; later admins are granted the role by an admin).
    public func ensureAdmin(username: String, password: String) async throws {
        let name = username.lowercased()
        if try await users.user(named: name) != nil { return }
        let cost = configuration.passwordCost
        let hash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
        do {
            try await users.createUser(
                StoredUser(
                    id: UserID(rawValue: "u-" + UUID().uuidString.lowercased())!, username: name, passwordHash: hash,
                    roles: [Role.admin, .bidder, .seller].map(\.rawValue).sorted(), createdAt: clock.now()))
        } catch {
            // Another node may have created it first.
            guard error == .usernameTaken else { throw error }
        }
    }

    @Sendable func register(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try RegisterRequest.decode(try await Self.body(request, context))
        let username = body.username.lowercased()
        guard username.count >= 3, username.count <= 32,
            username.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) })
        else { throw APIError.malformed("A username has 3 to 32 of a–z 0–9 _ - .") }
        // bcrypt reads at most 72 bytes and stops at a NUL: anything past either would be ignored
        // silently, so such passwords are refused instead.
        guard body.password.count >= 8, body.password.utf8.count <= 72, !body.password.contains("\u{0}") else {
            throw APIError.malformed("A password has at least 8 characters, at most 72 bytes of UTF-8, and no NUL.")
        }
        let roles = try (body.roles ?? ["bidder"]).map { name throws(APIError) -> Role in
            guard let role = Role(rawValue: name), Role.selfService.contains(role) else {
                throw APIError.malformed("Self-service roles are bidder and seller.")
            }
            return role
        }
        let cost = configuration.passwordCost
        let password = body.password
        let hash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
        let user = StoredUser(
            id: UserID(rawValue: "u-" + UUID().uuidString.lowercased())!, username: username, passwordHash: hash,
            roles: Array(Set(roles.map(\.rawValue))).sorted(), createdAt: clock.now())
        do {
            try await users.createUser(user)
        } catch .usernameTaken {
            throw APIError(.conflict, code: "username_taken", detail: "This username is taken.")
        } catch {
            throw APIError.storeUnavailable
        }
        return try Self.json(
            UserView(id: user.id.rawValue, username: user.username, roles: user.roles), status: .created)
    }

    /// `POST /v1/sessions`. The same work whether or not the user exists (the hash checked for an
    /// unknown user has the configured cost), and failed logins per username — counted in the
    /// store, so on every node — lock it for a while (``LoginLockPolicy``): 429 with `Retry-After`,
    /// for names that do not exist as well.
    @Sendable func login(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try LoginRequest.decode(try await Self.body(request, context))
        let username = body.username.lowercased()
        let now = clock.now()
        let failures: LoginFailures?
        let stored: StoredUser?
        do {
            failures = try await users.loginFailures(of: username)
            stored = try await users.user(named: username)
        } catch {
            throw APIError.storeUnavailable
        }
        if let failures, now < failures.lockedUntil { throw Self.loginLocked(until: failures.lockedUntil, now: now) }
        let password = body.password
        let hash = stored?.passwordHash ?? unknownUserHash
        let valid = try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
        guard let stored, valid else {
            let counted = try? await users.recordLoginFailure(of: username, now: now, policy: configuration.loginLock)
            if let counted, now < counted.lockedUntil { throw Self.loginLocked(until: counted.lockedUntil, now: now) }
            throw APIError(.unauthorized, code: "invalid_credentials", detail: "Unknown username or wrong password.")
        }
        if failures != nil { try? await users.clearLoginFailures(of: username) }
        let identity = Identity(
            userId: stored.id, username: stored.username, roles: Set(stored.roles.compactMap(Role.init(rawValue:))),
            tokenVersion: stored.tokenVersion)
        let (token, expires) = try await tokens.issue(for: identity)
        var response = try Self.json(
            SessionView(
                token: token,
                expiresAt: Timestamps.format(
                    Timestamp(millisecondsSinceEpoch: Int64(expires.timeIntervalSince1970 * 1_000)))))
        response.headers[.cacheControl] = "no-store"
        return response
    }

    static func loginLocked(until: Timestamp, now: Timestamp) -> APIError {
        let seconds = max(1, (until.millisecondsSinceEpoch - now.millisecondsSinceEpoch + 999) / 1_000)
        return APIError(
            .tooManyRequests, code: "login_locked",
            detail: "Too many failed logins for this username; try again in \(seconds) s.",
            extra: ["retryAfterSeconds": "\(seconds)"], headers: [.retryAfter: "\(seconds)"])
    }

    /// The caller as the store says now, for admin actions: a token revoked a moment ago on another
    /// node, or an admin role just taken away, is refused here even if this node's cache has not
    /// heard yet.
    func freshAdmin(_ context: GatewayContext) async throws(APIError) -> Identity {
        let caller = try context.caller()
        guard try await directory.currentStanding(of: caller, fresh: true).roles.contains(.admin) else {
            throw APIError.forbidden(.admin)
        }
        return caller
    }

    /// Every node drops what it cached about `user`: its tokens' fate changes now.
    func userChanged(_ user: UserID) async {
        await node.announceUserChange(user)
    }

    /// `DELETE /v1/me/sessions`: log out everywhere — every token of the caller stops working.
    @Sendable func revokeOwnTokens(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        do {
            try await users.revokeTokens(of: caller.userId)
        } catch .unknownUser {
            throw APIError.tokenRevoked
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(caller.userId)
        return Response(status: .noContent)
    }

    /// `DELETE /v1/users/{id}/sessions` (admin): every token of that user stops working.
    @Sendable func revokeTokens(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        guard let id = context.parameters.get("id").flatMap(UserID.init(rawValue:)) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        do {
            try await users.revokeTokens(of: id)
        } catch .unknownUser {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(id)
        return Response(status: .noContent)
    }

    @Sendable func me(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        return try Self.json(
            UserView(
                id: caller.userId.rawValue, username: caller.username, roles: caller.roles.map(\.rawValue).sorted(),
                blockedFromBidding: caller.blockedFromBidding))
    }

    @Sendable func grantRoles(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let body = try RolesRequest.decode(try await Self.body(request, context))
        let roles = try body.roles.map { name throws(APIError) -> Role in
            guard let role = Role(rawValue: name) else { throw APIError.malformed("Unknown role '\(name)'.") }
            return role
        }
        guard let id = context.parameters.get("id").flatMap(UserID.init(rawValue:)) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        do {
            try await users.setRoles(Array(Set(roles.map(\.rawValue))).sorted(), of: id)
        } catch .unknownUser {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(id)
        guard let user = try? await users.user(id: id) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        return try Self.json(UserView(id: user.id.rawValue, username: user.username, roles: user.roles))
    }

    // MARK: - Auctions

    @Sendable func createAuction(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        guard caller.roles.contains(.seller) || caller.roles.contains(.admin) else { throw APIError.forbidden(.seller) }
        let body = try CreateAuctionRequest.decode(try await Self.body(request, context))
        guard let currency = Currency(code: body.currency) else {
            throw APIError.malformed("Unsupported currency '\(body.currency)'.")
        }
        let id =
            try body.id.map { raw throws(APIError) -> AuctionID in
                guard let id = AuctionID(rawValue: raw) else {
                    throw APIError.malformed("An auction id has 1 to 64 of A–Z a–z 0–9 _ - . : (not only dots)")
                }
                return id
            } ?? AuctionID(rawValue: "a-" + UUID().uuidString.lowercased())!
        guard let closesAt = Timestamps.parse(body.closesAt) else {
            throw APIError.malformed("Field 'closesAt' must be an RFC 3339 time.")
        }
        let opensAt =
            try body.opensAt.map { text throws(APIError) -> Timestamp in
                guard let time = Timestamps.parse(text) else {
                    throw APIError.malformed("Field 'opensAt' must be an RFC 3339 time.")
                }
                return time
            } ?? clock.now()
        let saleId = try body.saleId.map { raw throws(APIError) -> SaleID in
            guard let id = SaleID(rawValue: raw) else { throw APIError.malformed("Invalid 'saleId'.") }
            return id
        }
        let money = { (amount: Int64) in Money(minorUnits: amount, currency: currency) }
        let terms = AuctionTerms(
            auctionId: id, sellerId: caller.userId, saleId: saleId, title: body.title,
            startingPrice: money(body.startingPrice),
            reservePrice: body.reservePrice.map(money), buyNowPrice: body.buyNowPrice.map(money), opensAt: opensAt,
            closesAt: closesAt, extensionWindow: .seconds(body.extensionWindowSeconds ?? 120),
            fees: configuration.fees)
        // Refused here rather than at the owner: invalid terms never cross the wire, and the answer
        // is the owner's own rule either way.
        do {
            try terms.validate(now: clock.now())
        } catch {
            throw APIError.rejected(error)
        }
        let accepted = try Self.unwrap(await node.submit(.create(terms), to: id, as: caller.issuer))
        var response = try Self.json(await view(accepted.summary, for: caller.userId), status: .created)
        response.headers[.location] = "/v1/auctions/\(id)"
        return response
    }

    /// `GET /v1/auctions?status=open|closing_soon|ended|all&sale=…&limit=…`, from this node's read
    /// model (soonest end first).
    @Sendable func listAuctions(_ request: Request, context: GatewayContext) async throws -> Response {
        let query = request.uri.queryParameters
        let status = query.get("status") ?? "open"
        guard ["open", "closing_soon", "ended", "all"].contains(status) else {
            throw APIError.malformed("'status' is one of open, closing_soon, ended, all.")
        }
        let sale = query.get("sale")
        let limit = min(max(query.get("limit").flatMap(Int.init) ?? 100, 1), 1_000)
        let now = clock.now()
        let soon = now.advanced(by: .seconds(600))
        let summaries = node.readModel.list(
            { summary in
                if let sale, summary.saleId?.rawValue != sale { return false }
                let running = summary.status == .running
                switch status {
                case "open": return running && summary.opensAt <= now && now < summary.endsAt
                case "closing_soon": return running && now < summary.endsAt && summary.endsAt <= soon
                case "ended": return !running
                default: return true
                }
            }, limit: limit
        )
        return try Self.json(["auctions": await views(summaries, now: now)])
    }

    /// `GET /v1/auctions/{id}`: from this node's read model (its `seq` says how fresh), or with
    /// `?consistent=true` from the durable log.
    @Sendable func auction(_ request: Request, context: GatewayContext) async throws -> Response {
        let id = try Self.auctionId(context)
        let viewer = context.identity?.userId
        if request.uri.queryParameters.get("consistent") != "true", let summary = node.readModel.summary(of: id) {
            return try Self.json(await view(summary, for: viewer))
        }
        let restored: Auction
        do {
            restored = try await events.load(id).restore(id)
        } catch {
            throw APIError.storeUnavailable
        }
        guard let summary = restored.summary else { throw APIError.rejected(.auctionNotFound) }
        return try Self.json(await view(summary, for: viewer))
    }

    @Sendable func bid(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        try caller.requireMayBid()
        let id = try Self.auctionId(context)
        let body = try BidRequest.decode(try await Self.body(request, context))
        let bid = PlaceBid(
            bidId: try Self.bidId(body.bidId), bidderId: caller.userId,
            maximum: try Self.money(body.maximum, body.currency))
        let paddle = try await paddles.assign(caller.userId, in: try await paddleScope(of: id))
        return try await bidResponse(
            counted(await node.submit(.placeBid(bid), to: id, as: caller.issuer)), paddle: paddle, for: caller.userId)
    }

    @Sendable func buyNow(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        try caller.requireMayBid()
        let id = try Self.auctionId(context)
        let body = try BuyNowRequest.decode(try await Self.body(request, context))
        let purchase = BuyNow(
            bidId: try Self.bidId(body.bidId), bidderId: caller.userId, price: try Self.money(body.price, body.currency)
        )
        let paddle = try await paddles.assign(caller.userId, in: try await paddleScope(of: id))
        return try await bidResponse(
            counted(await node.submit(.buyNow(purchase), to: id, as: caller.issuer)), paddle: paddle, for: caller.userId
        )
    }

    @Sendable func cancel(_ request: Request, context: GatewayContext) async throws -> Response {
        let admin = try await freshAdmin(context)
        let id = try Self.auctionId(context)
        let body = try CancelRequest.decode(try await Self.body(request, context))
        do {
            try Auction.validateCancelReason(body.reason)
        } catch {
            throw APIError.rejected(error)
        }
        let accepted = try Self.unwrap(await node.submit(.cancel(reason: body.reason), to: id, as: admin.issuer))
        return try Self.json(await view(accepted.summary, for: admin.userId))
    }

    /// Counts a bid's answer by outcome (or rejection code), then unwraps it.
    private func counted(_ result: Result<CommandAccepted, EngineError>) throws(APIError) -> CommandAccepted {
        switch result {
        case .success(let accepted):
            metrics.bid(outcome: accepted.replayed ? "replayed" : accepted.receipt?.outcome.rawValue ?? "accepted")
        case .failure(let error):
            metrics.bid(outcome: error.code)
        }
        return try Self.unwrap(result)
    }

    private func bidResponse(_ accepted: CommandAccepted, paddle: Int, for bidder: UserID) async throws -> Response {
        guard let receipt = accepted.receipt else {
            throw APIError(.internalServerError, code: "internal_error", detail: "No receipt.")
        }
        let view = BidView(
            bidId: receipt.bidId.rawValue, paddle: paddle, outcome: receipt.outcome.rawValue,
            replayed: accepted.replayed,
            seq: receipt.seq,
            maximum: receipt.maximum.minorUnits, priceAfter: receipt.price.minorUnits,
            auction: await self.view(accepted.summary, for: bidder))
        return try Self.json(view, status: accepted.replayed ? .ok : .created)
    }

    // MARK: - Leaderboards (read model, served locally)

    /// `GET /v1/auctions/{id}/leaderboard`: the leader, then bidders by the highest price their bids
    /// reached — never their maxima.
    @Sendable func leaderboard(_ request: Request, context: GatewayContext) async throws -> Response {
        let id = try Self.auctionId(context)
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        guard let (summary, standings) = node.readModel.topBidders(of: id, limit: limit) else {
            throw APIError.rejected(.auctionNotFound)
        }
        let scope = PaddleBook.scope(of: summary)
        let named = await paddles.paddles(
            of: summary.namedBidders.union(standings.map(\.bidderId)), viewer: context.identity?.userId, in: scope)
        let bidders = standings.map {
            LeaderboardView.Standing(
                paddle: named[$0.bidderId], highestPrice: $0.highestPrice.minorUnits, bids: $0.bids)
        }
        return try Self.json(
            LeaderboardView(
                auction: AuctionView(summary, now: clock.now(), paddles: named, viewer: context.identity?.userId),
                bidders: bidders))
    }

    /// `GET /v1/me/bids`: the lots the caller bid on — the scopes they hold a paddle in, the lots
    /// of those sales they have a standing in (this node's read model) — running lots first, soonest
    /// end first, then ended ones, latest first; at most `limit` (100, up to 500).
    @Sendable func myBids(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 100, 1), 500)
        let scopes: [String: Int]
        do {
            scopes = try await users.paddles(of: caller.userId)
        } catch {
            throw APIError.storeUnavailable
        }
        var mine: [(summary: AuctionSummary, standing: BidderStanding)] = []
        for scope in scopes.keys {
            let lots: [AuctionID]
            if scope.hasPrefix("lot:"), let id = AuctionID(rawValue: String(scope.dropFirst(4))) {
                lots = [id]
            } else if scope.hasPrefix("sale:"), let sale = SaleID(rawValue: String(scope.dropFirst(5))) {
                lots = node.readModel.highestPrices(inSale: sale, limit: .max).map(\.auctionId)
            } else {
                continue
            }
            for id in lots {
                guard let (summary, standings) = node.readModel.topBidders(of: id, limit: .max),
                    let standing = standings.first(where: { $0.bidderId == caller.userId })
                else { continue }
                mine.append((summary, standing))
            }
        }
        mine.sort { a, b in
            let (aRunning, bRunning) = (a.summary.status == .running, b.summary.status == .running)
            if aRunning != bRunning { return aRunning }
            return aRunning ? a.summary.endsAt < b.summary.endsAt : a.summary.endsAt > b.summary.endsAt
        }
        let shown = mine.prefix(limit)
        let views = await views(shown.map(\.summary), for: caller.userId, now: clock.now())
        return try Self.json([
            "lots": zip(shown, views).map { lot, view in
                MyLotView(
                    auction: view, highestPrice: lot.standing.highestPrice.minorUnits, bids: lot.standing.bids,
                    leading: lot.summary.leaderId == caller.userId)
            }
        ])
    }

    /// `GET /v1/leaderboards/most-active?minutes=5`: auctions by bids in the last minutes.
    @Sendable func mostActive(_ request: Request, context: GatewayContext) async throws -> Response {
        let minutes = min(max(request.uri.queryParameters.get("minutes").flatMap(Int.init) ?? 5, 1), 60)
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        let now = clock.now()
        let active = node.readModel.mostActive(since: now.advanced(by: .seconds(-60 * minutes)), limit: limit)
        let views = await views(active.map(\.summary), now: now)
        return try Self.json([
            "auctions": zip(active, views).map { ActiveView(auction: $1, recentBids: $0.recentBids) }
        ])
    }

    /// `GET /v1/sales/{id}/top`: a sale's lots by price, highest first.
    @Sendable func saleTop(_ request: Request, context: GatewayContext) async throws -> Response {
        guard let sale = context.parameters.get("id").flatMap(SaleID.init(rawValue:)) else {
            throw APIError(.notFound, code: "sale_not_found", detail: "There is no such sale.")
        }
        let limit = min(max(request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 10, 1), 100)
        let now = clock.now()
        return try Self.json([
            "auctions": await views(node.readModel.highestPrices(inSale: sale, limit: limit), now: now)
        ])
    }

    // MARK: - Live events (Server-Sent Events)

    /// `GET /v1/auctions/{id}/events`: every event after `Last-Event-ID` (or `?since=`), then live,
    /// as `text/event-stream` with `id:` = seq. Resuming on any node after a failover gives every
    /// later event exactly once.
    @Sendable func eventStream(_ request: Request, context: GatewayContext) async throws -> Response {
        let id = try Self.auctionId(context)
        let since =
            request.headers[.lastEventID].flatMap(Int64.init) ?? request.uri.queryParameters.get("since").flatMap(
                Int64.init) ?? 0
        guard since >= 0 else { throw APIError.malformed("'since' must not be negative.") }
        let scope = try await paddleScope(of: id)
        let slot = try streams.acquire(
            for: context.identity.map { "user:\($0.userId)" } ?? "ip:\(context.clientAddress)", .serverSentEvents)
        let stream = node.events(of: id, after: since)
        let paddles = self.paddles
        return serverSentEvents(stream, slot: slot, until: context.connectionClosed) { stored in
            EventView.serverSentEvent(
                stored, paddles: await paddles.paddles(of: EventView.namedBidders(stored.event), in: scope))
        }
    }

    /// `GET /v1/me/notifications`: the caller's notifications (outbid, won, lost, extended,
    /// cancelled) as `text/event-stream`, `id:` = the notification id (the same on every node).
    /// `Last-Event-ID` (the last id seen, on any node) or `?since=<ms>` first replays the retained
    /// ones from that time; the client drops ids it already has.
    @Sendable func notificationStream(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        var start = NotificationHub.Start.now
        if let lastSeen = request.headers[.lastEventID] {
            start = .after(id: lastSeen)
        } else if let raw = request.uri.queryParameters.get("since") {
            guard let milliseconds = Int64(raw), milliseconds >= 0 else {
                throw APIError.malformed("'since' is a time in milliseconds since 1970.")
            }
            start = .since(Timestamp(millisecondsSinceEpoch: milliseconds))
        }
        let slot = try streams.acquire(for: "user:\(caller.userId)", .serverSentEvents)
        let stream = node.readModel.notifications.subscribe(caller.userId, from: start)
        return serverSentEvents(
            stream, slot: slot, until: context.connectionClosed, render: NotificationView.serverSentEvent)
    }

    /// A `text/event-stream` response of `source`, plus a comment line every 15 s: it keeps the
    /// connection inside the server's idle timeout and shows a client that went away (the write
    /// fails). It ends when `source` does, the connection closes (`closed`) or the node shuts
    /// down, so the node can stop; `slot` is given back then.
    private func serverSentEvents<Source: AsyncSequence<Element, Never> & Sendable, Element>(
        _ source: Source, slot: StreamLimiter.Slot, until closed: EventLoopFuture<Void>,
        render: @escaping @Sendable (Element) async -> String
    ) -> Response {
        let bytes = AsyncStream<ByteBuffer> { continuation in
            let forward = Task {
                for await element in source { continuation.yield(ByteBuffer(string: await render(element))) }
                continuation.finish()
            }
            let heartbeat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(15))
                    continuation.yield(ByteBuffer(string: ": keepalive\n\n"))
                }
            }
            closed.whenComplete { _ in continuation.finish() }
            continuation.onTermination = { _ in
                forward.cancel()
                heartbeat.cancel()
                slot.end()
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody(asyncSequence: bytes.cancelOnGracefulShutdown()))
    }

    // MARK: - Helpers

    /// The `/metrics` text: the gateway's gauges and the process read just now, then the node's.
    func metricsText() async -> String {
        process.update()
        admission.updateGauges()
        connections.updateGauges()
        streams.updateGauges(in: registry)
        return await node.metricsText()
    }

    /// `GET /v1/cluster`: this node's view, each member with its web address.
    func clusterView() async throws -> Response {
        var snapshot = await node.snapshot
        let seen = node.memberAddressesSeen
        for index in snapshot.members.indices {
            guard let id = NodeID(rawValue: snapshot.members[index].id), let address = seen[id] else { continue }
            snapshot.members[index].http = Self.webAddress(of: address, port: configuration.clusterHTTPPort)
        }
        return try Self.json(snapshot)
    }

    /// A member's web origin: its cluster host with the cluster's HTTP port (IPv6 in brackets).
    static func webAddress(of member: NodeAddress, port: Int?) -> String? {
        guard let port else { return nil }
        let host = member.host.contains(":") ? "[\(member.host)]" : member.host
        return "http://\(host):\(port)"
    }

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
