import AuctionCore
public import Hummingbird
public import HummingbirdWebSocket
import NIOCore
import ServiceLifecycle

/// The request context of WebSocket upgrades. The only WebSocket route serves public auction events,
/// so it carries no caller.
public struct GatewayWebSocketContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The client's IP address: WebSocket streams are anonymous and capped per address.
    public let clientAddress: String

    public init(source: Source) {
        coreContext = .init(source: source)
        webSocket = .init()
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

extension GatewayAPI {
    /// The routes that upgrade to WebSocket. `GET /v1/auctions/{id}/ws?since=seq`: every event of
    /// the auction after `since`, then live, one JSON text message per event with its `seq` — the
    /// same events in the same order as the Server-Sent Events route, so a client that reconnects
    /// on another node with the last seq it saw gets the rest exactly once. Messages from the client
    /// are ignored; the socket closes when the client closes it or the node shuts down.
    public func webSocketRouter() -> Router<GatewayWebSocketContext> {
        let router = Router(context: GatewayWebSocketContext.self)
        router.add(middleware: ProblemMiddleware())
        let (node, streams) = (self.node, self.streams)
        let api = self
        router.ws(
            "/v1/auctions/:id/ws",
            shouldUpgrade: { request, context in
                let (id, _) = try Self.webSocketStart(request, context.parameters)
                _ = try await api.paddleScope(of: id)
                // Refused here with a proper answer; the slot itself is taken once upgraded.
                try streams.acquire(for: "ip:\(context.clientAddress)", .webSocket).end()
                return .upgrade([:])
            },
            onUpgrade: { inbound, outbound, context in
                let (id, since) = try Self.webSocketStart(context.request, context.requestContext.parameters)
                let slot = try streams.acquire(for: "ip:\(context.requestContext.clientAddress)", .webSocket)
                defer { slot.end() }
                let scope = try await api.paddleScope(of: id)
                let events = node.events(of: id, after: since)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        // Until the client closes (its close frame ends the inbound stream).
                        for try await _ in inbound {}
                    }
                    group.addTask {
                        for await event in events.cancelOnGracefulShutdown() {
                            let paddles = await api.paddles.paddles(
                                of: EventView.namedBidders(event.event), in: scope)
                            try await outbound.write(.text(EventView.json(event, paddles: paddles)))
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            })
        return router
    }

    /// The auction and the seq a WebSocket client starts after, or a 400/404 before the upgrade.
    static func webSocketStart(_ request: Request, _ parameters: Parameters) throws(APIError) -> (AuctionID, Int64) {
        guard let id = parameters.get("id").flatMap(AuctionID.init(rawValue:)) else {
            throw APIError.rejected(.auctionNotFound)
        }
        let raw = request.uri.queryParameters.get("since") ?? "0"
        guard let since = Int64(raw), since >= 0 else {
            throw APIError.malformed("'since' is the last seq seen (0 or more).")
        }
        return (id, since)
    }
}
