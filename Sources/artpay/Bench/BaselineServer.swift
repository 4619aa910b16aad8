import ArgumentParser
import AuctionCore
import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle

/// `artpay bench baseline-server` (hidden): `POST /v1/auctions/{id}/bids` on the same HTTP stack
/// as a node — Hummingbird, the Gateway's metrics, problem, timeout, authentication (the nodes'
/// ES256 key, so their tokens work) and rate-limit middleware, the same JSON in and out — but the
/// bid is decided by another design: `rowlock` (one PostgreSQL transaction per bid,
/// `RowLockBaseline.place`) or `redis` (one EVALSHA of scripts/bench-http/place-bid.redis.lua).
/// Started three times by `artpay bench http`.
struct BaselineServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline-server",
        abstract: "Serve bids over HTTP with a baseline design (for artpay bench http).",
        shouldDisplay: false)

    enum Design: String, ExpressibleByArgument, CaseIterable {
        case rowlock, redis
    }

    @Option(help: "rowlock or redis.") var design: Design
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "HTTP port.") var port: Int
    @Option(help: "PEM file of the ES256 key the nodes sign tokens with.") var signingKeyFile: String
    @Option(help: "Key id of that key (the nodes' auth.signingKid).") var signingKid = "k1"
    @Option(help: "Connections to PostgreSQL (rowlock) or Redis (redis).") var pool = 24
    @Option(help: "Redis port (redis).") var redisPort: Int?
    @Option(help: "SHA1 of the loaded bid script (redis).") var redisSha: String?
    @Option(help: "Seconds a request may take (as on a node).") var requestTimeoutSeconds = 15
    @OptionGroup var postgres: PostgresOptions

    func validate() throws {
        if design == .redis, redisPort == nil || redisSha == nil {
            throw ValidationError("--design redis needs --redis-port and --redis-sha")
        }
    }

    func run() async throws {
        var logger = Logger(label: "artpay.bench.baseline-server")
        logger.logLevel = .notice
        let pem = try String(contentsOfFile: signingKeyFile, encoding: .utf8)
        let tokens = try await TokenAuthority.make(signing: .init(kid: signingKid, privateKeyPEM: pem))

        let router = Router(context: GatewayContext.self)
        router.add(middleware: MetricsMiddleware(metrics: HTTPMetrics()))
        router.add(middleware: ProblemMiddleware())
        router.get("/health/ready") { _, _ -> HTTPResponse.Status in .ok }
        let api = router.group("/v1")
            .add(middleware: AuthenticationMiddleware(signaturesOnly: tokens))
            .add(middleware: RateLimitMiddleware(policy: .init(capacity: 100_000, refillPerSecond: 100_000)))

        var services: [any Service] = []
        let decider: any BaselineDecider
        switch design {
        case .rowlock:
            let client = PostgresClient(
                configuration: postgres.configuration(maximumConnections: pool), backgroundLogger: logger)
            services.append(client)
            decider = RowLockDecider(client: client, logger: logger)
        case .redis:
            decider = RedisDecider(
                pool: RedisPool(host: "127.0.0.1", port: redisPort!, size: pool), sha: redisSha!)
        }
        api.post("/auctions/:id/bids") { request, context in
            try await BaselineBids.handle(request, context, decider)
        }
        let app = Application(
            router: RequestDeadline(router, limit: .seconds(requestTimeoutSeconds)),
            server: .http1(configuration: .init(idleTimeout: .seconds(60))),
            configuration: .init(address: .hostname(host, port: port)), services: services, logger: logger)
        try await app.runService()
    }
}

/// What a baseline design answers for one bid.
enum BaselineDecision: Sendable {
    case placed(BaselinePlaced)
    case rejected(AuctionRejection)
}

struct BaselinePlaced: Sendable {
    var outcome: String
    var replayed: Bool
    var seq: Int64
    var maximum: Int64
    var price: Int64
    var minimumNextBid: Int64
    var leaderId: String
    var bidCount: Int
}

protocol BaselineDecider: Sendable {
    func place(auction: String, bidId: String, bidder: String, maximum: Int64, currency: Currency) async throws
        -> BaselineDecision
}

/// The route itself: authenticated bidder, strict body, decision, the node's answer shapes
/// (201 with the bid and the auction, 422 problem with `minimum` or `currentMaximum`).
enum BaselineBids {
    struct Body: Decodable {
        var bidId: String
        var maximum: Int64
        var currency: String
    }

    /// The fields of the node's `BidView` and `AuctionView` a baseline can fill.
    struct BidView: Encodable {
        var bidId: String
        var outcome: String
        var replayed: Bool
        var seq: Int64
        var maximum: Int64
        var priceAfter: Int64
        var auction: AuctionView
    }

    struct AuctionView: Encodable {
        var id: String
        var seq: Int64
        var currency: String
        var price: Int64
        var minimumNextBid: Int64
        var leaderId: String
        var bidCount: Int
        var status: String
    }

    static func handle(_ request: Request, _ context: GatewayContext, _ decider: any BaselineDecider) async throws
        -> Response
    {
        guard let caller = context.identity else {
            throw APIError(
                .unauthorized, code: "unauthenticated", detail: "A bearer token is required.",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        guard caller.roles.contains(.bidder) else {
            throw APIError(
                .forbidden, code: "forbidden", detail: "This needs the bidder role.",
                extra: ["requiredRole": "bidder"])
        }
        guard let id = context.parameters.get("id").flatMap(AuctionID.init(rawValue:)) else {
            throw APIError.rejected(.auctionNotFound)
        }
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        let body: Body
        do {
            body = try JSONDecoder().decode(Body.self, from: Data(buffer.readableBytesView))
        } catch {
            throw APIError(.badRequest, code: "malformed_request", detail: "The body is not a valid bid.")
        }
        guard let bidId = BidID(rawValue: body.bidId) else {
            throw APIError(
                .badRequest, code: "malformed_request", detail: "A bid id has 1 to 64 of A–Z a–z 0–9 _ - . :")
        }
        guard let currency = Currency(code: body.currency) else {
            throw APIError(.badRequest, code: "malformed_request", detail: "Unsupported currency '\(body.currency)'.")
        }
        let decision = try await decider.place(
            auction: id.rawValue, bidId: bidId.rawValue, bidder: caller.userId.rawValue, maximum: body.maximum,
            currency: currency)
        switch decision {
        case .rejected(let rejection):
            throw APIError.rejected(rejection)
        case .placed(let placed):
            let view = BidView(
                bidId: bidId.rawValue, outcome: placed.outcome, replayed: placed.replayed, seq: placed.seq,
                maximum: placed.maximum, priceAfter: placed.price,
                auction: AuctionView(
                    id: id.rawValue, seq: placed.seq, currency: currency.code, price: placed.price,
                    minimumNextBid: placed.minimumNextBid, leaderId: placed.leaderId, bidCount: placed.bidCount,
                    status: "open"))
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return Response(
                status: placed.replayed ? .ok : .created, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(view))))
        }
    }
}

/// The row-lock design: `RowLockBaseline.place`, one transaction per bid.
struct RowLockDecider: BaselineDecider {
    let client: PostgresClient
    let logger: Logger

    func place(auction: String, bidId: String, bidder: String, maximum: Int64, currency: Currency) async throws
        -> BaselineDecision
    {
        guard currency == .eur else { return .rejected(.currencyMismatch(expected: .eur)) }
        guard maximum > 0 else { return .rejected(.invalidAmount) }
        do {
            let placed = try await RowLockBaseline.place(
                client: client, logger: logger, auctionId: auction, bidId: bidId, bidderId: bidder, maximum: maximum)
            return .placed(
                BaselinePlaced(
                    outcome: placed.leaderId == bidder ? "leading" : "outbid", replayed: false,
                    seq: Int64(placed.bidCount + 1), maximum: maximum, price: placed.price,
                    minimumNextBid: placed.minimumNextBid, leaderId: placed.leaderId, bidCount: placed.bidCount))
        } catch let error as PostgresTransactionError {
            guard let rejected = error.closureError as? RowLockBaseline.Rejected else {
                throw APIError(
                    .serviceUnavailable, code: "store_unavailable", detail: "The store is busy; try again shortly.",
                    headers: [.retryAfter: "1"])
            }
            if rejected.minimum == 0 { return .rejected(.auctionNotFound) }
            if let current = rejected.currentMaximum {
                return .rejected(.maximumNotAboveCurrent(currentMaximum: Money(minorUnits: current, currency: .eur)))
            }
            return .rejected(.belowMinimum(minimum: Money(minorUnits: rejected.minimum, currency: .eur)))
        }
    }
}

/// The Redis + Lua design: one EVALSHA per bid (the script decides and stores atomically).
struct RedisDecider: BaselineDecider {
    let pool: RedisPool
    let sha: String

    func place(auction: String, bidId: String, bidder: String, maximum: Int64, currency: Currency) async throws
        -> BaselineDecision
    {
        do {
            return try await RedisBids.place(
                pool, sha: sha, auction: auction, bidId: bidId, bidder: bidder, maximum: maximum, currency: currency)
        } catch {
            throw APIError(
                .serviceUnavailable, code: "store_unavailable", detail: "The store is busy; try again shortly.",
                headers: [.retryAfter: "1"])
        }
    }
}
