import AuctionCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Node
import ServiceLifecycle

/// Live streams as Server-Sent Events: an auction's events and the caller's notifications (the WebSocket form is in GatewayWebSocket.swift).
extension GatewayAPI {
    func addStreamRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/auctions/:id/events", use: eventStream)
        api.get("/me/notifications", use: notificationStream)
    }

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
    func serverSentEvents<Source: AsyncSequence<Element, Never> & Sendable, Element>(
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
}
