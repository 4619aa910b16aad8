import AuctionCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Node
import Storage
import Synchronization

/// One page of `GET /v1/feed`.
struct FeedPageView: Codable, Sendable {
    var events: [FeedEvent]
    /// Where to ask from next; equal to `after` when nothing new has committed.
    var next: String
}

/// What a feed request asks for: after which cursor, which kinds, how many per page.
struct FeedQuery: Sendable {
    static let defaultLimit = 100
    static let maximumLimit = 1_000

    var after: FeedCursor
    /// nil: every kind.
    var kinds: Set<AuctionEvent.Kind>?
    var limit: Int

    /// From `?after=&types=&limit=`; `Last-Event-ID` (a reconnecting event stream's) wins over
    /// `after`.
    init(_ request: Request) throws(APIError) {
        let query = request.uri.queryParameters
        let resume = request.headers[.lastEventID] ?? query.get("after")
        if let resume {
            guard let cursor = FeedCursor(resume) else {
                throw APIError(
                    .badRequest, code: "invalid_cursor",
                    detail: "A feed cursor is the `cursor` of an event or the `next` of a page, as given "
                        + "(two numbers and a dot).")
            }
            after = cursor
        } else {
            after = .start
        }
        if let types = query.get("types") {
            var kinds = Set<AuctionEvent.Kind>()
            for name in types.split(separator: ",", omittingEmptySubsequences: false) {
                guard let kind = AuctionEvent.Kind(publicName: String(name)) else {
                    let known = AuctionEvent.Kind.allCases.map(\.publicName).joined(separator: ", ")
                    throw APIError(
                        .badRequest, code: "unknown_event_type",
                        detail: "Unknown event type '\(name)'. The types are: \(known).")
                }
                kinds.insert(kind)
            }
            self.kinds = kinds
        } else {
            kinds = nil
        }
        if let raw = query.get("limit") {
            guard let limit = Int(raw), (1...Self.maximumLimit).contains(limit) else {
                throw APIError.malformed("'limit' is a number from 1 to \(Self.maximumLimit).")
            }
            self.limit = limit
        } else {
            limit = Self.defaultLimit
        }
    }

    func includes(_ entry: FeedEntry) -> Bool {
        kinds?.contains(entry.event.event.kind) ?? true
    }
}

extension GatewayAPI {
    /// `GET /v1/feed`: every auction's events in one commit order, for the `service` role. A page of
    /// JSON (`?after=<cursor>&types=bid_placed,auction_closed&limit=100`), or, with
    /// `Accept: text/event-stream`, a stream that goes on as events commit (`id:` is the cursor,
    /// so a reconnecting client resumes with `Last-Event-ID` on any node). The order comes from the
    /// store, not from a node, so a consumer that moves to another node skips nothing. With
    /// `types`, events of other kinds are passed over: a page may hold fewer than `limit` events
    /// (even none) while `next` moves on.
    @Sendable func feed(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        try caller.require(.service)
        let query = try FeedQuery(request)
        if request.headers[.accept]?.contains("text/event-stream") == true {
            // Refuse a bad cursor with a status now, not inside a stream that has begun.
            _ = try await feedPage(after: query.after, limit: 1)
            let slot = try streams.acquire(for: "user:\(caller.userId)", .serverSentEvents)
            let pump = FeedPump(store: events, query: query, slot: slot)
            // Pulled: the next page is read only once the client has taken the last one, so a slow
            // consumer holds one page here, never the backlog.
            let chunks = AsyncStream(unfolding: { await pump.next() }, onCancel: { slot.end() })
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody(asyncSequence: chunks.cancelOnGracefulShutdown()))
        }
        let page = try await feedPage(after: query.after, limit: query.limit)
        return try Self.json(
            FeedPageView(
                events: page.entries.filter(query.includes).map(FeedEvent.init), next: page.next.description))
    }

    private func feedPage(after cursor: FeedCursor, limit: Int) async throws(APIError) -> FeedPage {
        do {
            return try await events.feed(after: cursor, limit: limit)
        } catch .unknownFeedCursor {
            throw APIError(
                .badRequest, code: "unknown_cursor",
                detail: "This cursor was not issued by this cluster's store (or is past its last event).")
        } catch .feedCursorExpired(let cursor, let horizon) {
            throw APIError.feedCursorExpired(cursor, horizon: horizon)
        } catch {
            throw APIError.storeUnavailable
        }
    }
}

/// The feed as server-sent events, a chunk per call: the events of the next page the query wants,
/// or a keepalive comment after 15 s without any (it also shows a client that went away: the write
/// fails and the stream ends). A store that fails is asked again after a pause: the stream stalls
/// with it and resumes where it stood, never skipping. The stream's slot is given back when the
/// pump goes (the response ended, however it ended).
private final class FeedPump: Sendable {
    private let store: any EventStore
    private let query: FeedQuery
    private let slot: StreamLimiter.Slot
    private let cursor: Mutex<FeedCursor>

    init(store: any EventStore, query: FeedQuery, slot: StreamLimiter.Slot) {
        self.store = store
        self.query = query
        self.slot = slot
        self.cursor = Mutex(query.after)
    }

    deinit { slot.end() }

    func next() async -> ByteBuffer? {
        let quietUntil = ContinuousClock.now.advanced(by: .seconds(15))
        while !Task.isCancelled {
            let after = cursor.withLock { $0 }
            guard let page = try? await store.feed(after: after, limit: 500) else {
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            cursor.withLock { $0 = page.next }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var text = ""
            for entry in page.entries where query.includes(entry) {
                let event = FeedEvent(entry)
                let data = (try? encoder.encode(event)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                text += "id: \(event.cursor)\nevent: \(event.type)\ndata: \(data)\n\n"
            }
            if !text.isEmpty { return ByteBuffer(string: text) }
            if ContinuousClock.now >= quietUntil { return ByteBuffer(string: ": keepalive\n\n") }
            if page.entries.count < 500 { try? await Task.sleep(for: .milliseconds(200)) }
        }
        return nil
    }
}

extension APIError {
    /// 410: events after `cursor` were compacted away (the feed's retention), for the feed and for
    /// webhook cursors alike.
    static func feedCursorExpired(_ cursor: FeedCursor, horizon: FeedCursor) -> APIError {
        APIError(
            .gone, code: "feed_cursor_expired",
            detail:
                "Events after cursor \(cursor) were compacted with the live logs of archived lots (their records are "
                + "in the archive). Start again from 'start' (the oldest event kept) or from \(horizon).")
    }
}

extension GatewayAPI {
    /// The commit-ordered feed of every event, for the service role.
    func addFeedRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/feed", use: feed)
    }
}
