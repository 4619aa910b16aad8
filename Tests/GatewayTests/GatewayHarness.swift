import AuctionCore
import AuctionRuntime
import ClusterCore
import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import Node
import Payments
import Storage
import TestSupport
import Testing

/// One node's API over a real SQLite store, driven without sockets (Hummingbird's router tests).
struct GatewayHarness: Sendable {
    static let webhookSecret = "whsec_gateway_tests"
    let api: GatewayAPI
    let tokens: TokenAuthority
    /// The node's store, for planting what the API only reads (archived lots).
    let store: SQLiteEventStore
    /// The private key of `kid` "k1" (the signing key) and of "k0" (an older, still accepted key).
    let signingPEM: String
    let previousPEM: String

    static func run(
        rateLimit: RateLimitMiddleware.Policy = .init(capacity: 10_000, refillPerSecond: 10_000),
        live: Bool = false, connections: ConnectionLimits = .init(), streams: StreamLimits = .init(),
        loginLock: LoginLockPolicy = .init(), provider: (any PaymentProvider)? = nil,
        configure: @Sendable (inout GatewayAPI.Configuration) -> Void = { _ in },
        metrics: (any MetricsFactory)? = nil,
        _ body: @Sendable (any TestClientProtocol, GatewayHarness) async throws -> Void
    ) async throws {
        try await withSQLiteStore { store, _ in
            var logger = Logger(label: "test.gateway")
            logger.logLevel = .critical
            let id = NodeID(rawValue: "node-1")!
            let clock = SystemClock()
            let transport = try ClusterTransport(
                node: id, secret: ClusterSecret("gateway tests secret")!, tls: TestCertificates.tls(for: id),
                logger: logger)
            let node = ClusterNode(
                configuration: .init(id: id, address: NodeAddress(host: "127.0.0.1", port: 1), seeds: []), store: store,
                transport: transport, clock: clock, logger: logger, metricsFactory: metrics)
            let signingPEM = TokenAuthority.generatePrivateKeyPEM()
            let previousPEM = TokenAuthority.generatePrivateKeyPEM()
            let tokens = try await TokenAuthority.make(
                signing: .init(kid: "k1", privateKeyPEM: signingPEM),
                verification: [
                    .init(kid: "k0", publicKeyPEM: try TokenAuthority.publicKeyPEM(ofPrivateKey: previousPEM))
                ])
            var configuration = GatewayAPI.Configuration(
                passwordCost: 4, rateLimit: rateLimit, connections: connections, streams: streams,
                loginLock: loginLock, webhookSecrets: [GatewayHarness.webhookSecret])
            configure(&configuration)
            let api = GatewayAPI(
                node: node, users: store, events: store, webhooks: store, archive: store, tokens: tokens, clock: clock,
                configuration: configuration,
                provider: provider)
            try await api.ensureAdmin(username: "root", password: "root-password")
            // Live: a real HTTP server on a free loopback port, as a node serves it (WebSocket
            // upgrades, the connection guard).
            let app = Application(
                router: api.responder(isReady: { true }), server: api.httpServer(),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
            let harness = GatewayHarness(
                api: api, tokens: tokens, store: store, signingPEM: signingPEM, previousPEM: previousPEM)
            // The node's loop feeds its read model (leaderboards, listings).
            let loop = Task { await node.run() }
            defer { loop.cancel() }
            try await app.test(live ? .live : .router) { client in try await body(client, harness) }
            await node.leave()
        }
    }
}

extension TestClientProtocol {
    /// Sends a JSON body (or raw bytes) and returns the response.
    func send(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, token: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var fields = headers
        if let token { fields[.authorization] = "Bearer \(token)" }
        if json != nil { fields[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: fields, body: json.map { ByteBuffer(string: $0) })
    }

    /// Registers `username` with `roles` and logs in; returns the token.
    func signUp(_ username: String, roles: [String] = ["bidder"]) async throws -> String {
        let rolesJSON = roles.map { "\"\($0)\"" }.joined(separator: ",")
        let created = try await send(
            .post, "/v1/users", json: #"{"username":"\#(username)","password":"password-123","roles":[\#(rolesJSON)]}"#)
        #expect(created.status == .created, "register \(username): \(String(buffer: created.body))")
        return try await logIn(username, "password-123")
    }

    func logIn(_ username: String, _ password: String) async throws -> String {
        let session = try await send(
            .post, "/v1/sessions", json: #"{"username":"\#(username)","password":"\#(password)"}"#)
        let object = try JSONSerialization.jsonObject(with: Data(session.body.readableBytesView)) as? [String: Any]
        guard let token = object?["token"] as? String else {
            throw HarnessError("no token: \(String(buffer: session.body))")
        }
        return token
    }
}

extension TestResponse {
    /// The JSON body as a dictionary (problem+json included).
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]) ?? [:]
    }
}

/// A lot closing in an hour, in EUR, created by whoever's token is given.
func auctionJSON(id: String, starting: Int = 1_000) -> String {
    let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
    return
        #"{"id":"\#(id)","title":"Lot \#(id)","currency":"EUR","startingPrice":\#(starting),"closesAt":"\#(closes)"}"#
}
