import AuctionCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Node
import Storage

struct CreateWebhookRequest: StrictRequest {
    static let fields: Set<String> = ["url", "types", "secret", "from"]
    var url: String
    /// Public event names; absent: every kind.
    var types: [String]?
    /// The signing secret; absent: one is made and shown once, in the answer.
    var secret: String?
    /// `now` (the default: what commits from now on), `start` (the whole feed), or a feed cursor.
    var from: String?
}

struct ReplayWebhookRequest: StrictRequest {
    static let fields: Set<String> = ["after"]
    /// Deliveries start again after this feed cursor (`start`: from the first event).
    var after: String
}

/// A webhook endpoint as an admin sees it; the secret only in the answer that created it.
struct WebhookEndpointView: Codable, Sendable {
    var id: String
    var url: String
    var types: [String]
    var createdAt: String
    /// After which event of the feed the next delivery starts.
    var cursor: String
    var secret: String?

    init(_ endpoint: WebhookEndpoint, showingSecret: Bool = false) {
        id = endpoint.id
        url = endpoint.url
        types = endpoint.types
        createdAt = endpoint.createdAt.rfc3339
        cursor = endpoint.cursor.description
        secret = showingSecret ? endpoint.secret : nil
    }
}

struct WebhookEndpointList: Codable, Sendable {
    var endpoints: [WebhookEndpointView]
}

struct WebhookDeliveryView: Codable, Sendable {
    var cursor: String
    var auctionId: String
    var seq: Int64
    var type: String
    var attempt: Int
    var outcome: String
    var status: Int?
    var error: String?
    var at: String
    var node: String

    init(_ delivery: WebhookDelivery) {
        cursor = delivery.cursor.description
        auctionId = delivery.auction.rawValue
        seq = delivery.seq
        type = delivery.type
        attempt = delivery.attempt
        outcome = delivery.outcome.rawValue
        status = delivery.status
        error = delivery.error
        at = delivery.at.rfc3339
        node = delivery.node
    }
}

struct WebhookDeliveryList: Codable, Sendable {
    var deliveries: [WebhookDeliveryView]
}

extension GatewayAPI {
    /// `POST /v1/webhooks` (admin): registers an endpoint the owner of its shard delivers to —
    /// each event it asks for, signed with its secret (`ArtPay-Signature`), at least once, in
    /// order per auction, retried for up to 3 days.
    @Sendable func createWebhook(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let body = try CreateWebhookRequest.decode(try await Self.body(request, context))
        let url = try Self.webhookURL(body.url)
        let types = try Self.eventTypes(body.types ?? [])
        if let secret = body.secret, !(16...256).contains(secret.utf8.count) {
            throw APIError.malformed("A webhook secret has 16 to 256 bytes (or leave it out to get one made).")
        }
        let cursor: FeedCursor
        switch body.from ?? "now" {
        case "now": cursor = try await webhookStore { try await self.webhookEndpoints.feedHead() }
        case "start": cursor = .start
        case let text:
            guard let parsed = FeedCursor(text) else {
                throw APIError(
                    .badRequest, code: "invalid_cursor",
                    detail: "'from' is now, start, or a feed cursor (two numbers and a dot).")
            }
            cursor = parsed
        }
        let endpoint = WebhookEndpoint(
            id: "wh-" + UUID().uuidString.lowercased(), url: url, types: types,
            secret: body.secret ?? Self.newWebhookSecret(), createdAt: clock.now(), cursor: cursor)
        guard try await webhookStore({ try await self.webhookEndpoints.createWebhookEndpoint(endpoint) }) else {
            throw APIError(.conflict, code: "webhook_exists", detail: "An endpoint with this id exists.")
        }
        return try Self.json(WebhookEndpointView(endpoint, showingSecret: true), status: .created)
    }

    /// `GET /v1/webhooks` (admin).
    @Sendable func listWebhooks(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let endpoints = try await webhookStore { try await self.webhookEndpoints.webhookEndpoints() }
        return try Self.json(WebhookEndpointList(endpoints: endpoints.map { WebhookEndpointView($0) }))
    }

    /// `GET /v1/webhooks/{id}` (admin).
    @Sendable func webhook(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        return try Self.json(WebhookEndpointView(try await existingWebhook(context)))
    }

    /// `DELETE /v1/webhooks/{id}` (admin): no more deliveries (one in flight may still arrive).
    @Sendable func deleteWebhook(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let id = try await existingWebhook(context).id
        _ = try await webhookStore { try await self.webhookEndpoints.deleteWebhookEndpoint(id) }
        return Response(status: .noContent)
    }

    /// `GET /v1/webhooks/{id}/deliveries?limit=` (admin): the latest attempts, newest first.
    @Sendable func webhookDeliveries(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let id = try await existingWebhook(context).id
        let limit =
            try request.uri.queryParameters.get("limit").map { raw throws(APIError) -> Int in
                guard let limit = Int(raw), (1...1_000).contains(limit) else {
                    throw APIError.malformed("'limit' is a number from 1 to 1000.")
                }
                return limit
            } ?? 100
        let deliveries = try await webhookStore {
            try await self.webhookEndpoints.webhookDeliveries(of: id, limit: limit)
        }
        return try Self.json(WebhookDeliveryList(deliveries: deliveries.map(WebhookDeliveryView.init)))
    }

    /// `POST /v1/webhooks/{id}/replay` (admin) `{after}`: deliveries start again after that cursor
    /// (the `cursor` of a logged delivery, or `start`); the deliverer picks it up at its next step.
    @Sendable func replayWebhook(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let body = try ReplayWebhookRequest.decode(try await Self.body(request, context))
        guard let cursor = body.after == "start" ? .start : FeedCursor(body.after) else {
            throw APIError(
                .badRequest, code: "invalid_cursor",
                detail: "'after' is start or a feed cursor (two numbers and a dot).")
        }
        let id = try await existingWebhook(context).id
        guard
            let endpoint = try await webhookStore({
                try await self.webhookEndpoints.rewindWebhookCursor(of: id, to: cursor)
            })
        else { throw Self.noSuchWebhook }
        return try Self.json(WebhookEndpointView(endpoint))
    }

    private static let noSuchWebhook = APIError(
        .notFound, code: "webhook_not_found", detail: "There is no such webhook.")

    private func existingWebhook(_ context: GatewayContext) async throws(APIError) -> WebhookEndpoint {
        guard let id = context.parameters.get("id"),
            let endpoint = try await webhookStore({ try await self.webhookEndpoints.webhookEndpoint(id) })
        else { throw Self.noSuchWebhook }
        return endpoint
    }

    private func webhookStore<T: Sendable>(_ work: () async throws -> T) async throws(APIError) -> T {
        do {
            return try await work()
        } catch StorageError.feedCursorExpired(let cursor, let horizon) {
            throw APIError.feedCursorExpired(cursor, horizon: horizon)
        } catch {
            throw APIError.storeUnavailable
        }
    }

    /// An absolute http(s) URL with a host, of at most 2,048 bytes: where deliveries go.
    static func webhookURL(_ text: String) throws(APIError) -> String {
        guard text.utf8.count <= 2_048, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty, url.user == nil
        else {
            throw APIError(
                .badRequest, code: "invalid_webhook_url",
                detail: "A webhook URL is an absolute http:// or https:// URL with a host (no user info).")
        }
        return text
    }

    /// Public event names, each known, none twice.
    static func eventTypes(_ names: [String]) throws(APIError) -> [String] {
        for name in names where AuctionEvent.Kind(publicName: name) == nil {
            let known = AuctionEvent.Kind.allCases.map(\.publicName).joined(separator: ", ")
            throw APIError(
                .badRequest, code: "unknown_event_type",
                detail: "Unknown event type '\(name)'. The types are: \(known).")
        }
        return Array(Set(names)).sorted()
    }

    /// 32 random bytes, hex, after `whsec_` (as Stripe shows its signing secrets).
    static func newWebhookSecret() -> String {
        "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }
}

extension GatewayAPI {
    /// Webhook endpoints (admin): register, list, inspect, delete, deliveries, replay.
    func addWebhookRoutes(to api: RouterGroup<GatewayContext>) {
        api.post("/webhooks", use: createWebhook)
        api.get("/webhooks", use: listWebhooks)
        api.get("/webhooks/:id", use: webhook)
        api.delete("/webhooks/:id", use: deleteWebhook)
        api.get("/webhooks/:id/deliveries", use: webhookDeliveries)
        api.post("/webhooks/:id/replay", use: replayWebhook)
    }
}
