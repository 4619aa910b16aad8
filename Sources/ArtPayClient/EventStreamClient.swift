public import Foundation

#if canImport(FoundationNetworking)
    public import FoundationNetworking
#endif

/// One server-sent event: of an auction stream (`id` = seq) or of a notification stream (`id` =
/// the notification's id).
public struct ServerSentEvent: Sendable, Hashable {
    public var id: String
    public var type: String
    public var data: String

    /// The event's seq, for auction streams.
    public var seq: Int64? { Int64(id) }
}

/// Follows an auction's live events across nodes: connects to one node's
/// `/v1/auctions/{id}/events`, and when that connection ends (the node died, the network broke)
/// reconnects to the next node with `Last-Event-ID` = the last seq seen, so the events delivered
/// are every event, in order, once.
public final class EventStreamClient: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""
    private var continuation: AsyncStream<ServerSentEvent>.Continuation?

    public override init() {}

    /// Events of `auction` after `seq`, from `nodes` in turn, until the consumer stops or every node
    /// refused `attempts` times in a row. `dropRepeats: false` passes on whatever the servers send
    /// (for checkers that judge the servers, not this client); each reconnect still asks for the
    /// events after the highest seq seen.
    public static func follow(
        _ auction: String, after seq: Int64, nodes: [String], attempts: Int = 20, dropRepeats: Bool = true
    ) -> AsyncStream<(event: ServerSentEvent, node: String)> {
        reconnecting(nodes: nodes, attempts: attempts, start: seq) { node, last in
            ("\(node)/v1/auctions/\(auction)/events", ["Last-Event-ID": "\(last)"])
        } accept: { event, last in
            guard let seq = event.seq, seq > last || !dropRepeats else { return false }
            last = max(last, seq)
            return true
        }
    }

    /// The caller's notifications (outbid, won, lost, extended, cancelled), from `nodes` in turn:
    /// on reconnect it sends the last id seen, the node replays what it retained from then on, and
    /// ids already delivered are dropped — each notification once. `since` also asks the first node
    /// for the ones it retained from that time.
    public static func notifications(
        token: String, nodes: [String], since: Date? = nil, attempts: Int = 20
    ) -> AsyncStream<(event: ServerSentEvent, node: String)> {
        struct Seen: Sendable {
            var last: String?
            var ids: Set<String> = []
        }
        return reconnecting(nodes: nodes, attempts: attempts, start: Seen()) { node, seen in
            var headers = ["Authorization": "Bearer \(token)"]
            var url = "\(node)/v1/me/notifications"
            if let last = seen.last {
                headers["Last-Event-ID"] = last
            } else if let since {
                url += "?since=\(Int64(since.timeIntervalSince1970 * 1_000))"
            }
            return (url, headers)
        } accept: { event, seen in
            seen.last = event.id
            return seen.ids.insert(event.id).inserted
        }
    }

    /// The reconnect loop both streams share: connect to the next node with the request `state`
    /// calls for, pass on the events `accept` lets through (it updates `state`), move on when the
    /// connection ends; give up after `attempts` rounds of nodes that sent nothing.
    private static func reconnecting<State: Sendable>(
        nodes: [String], attempts: Int, start: State,
        request: @escaping @Sendable (_ node: String, _ state: State) -> (url: String, headers: [String: String]),
        accept: @escaping @Sendable (_ event: ServerSentEvent, _ state: inout State) -> Bool
    ) -> AsyncStream<(event: ServerSentEvent, node: String)> {
        AsyncStream { continuation in
            let worker = Task {
                var state = start
                var failures = 0
                var index = 0
                while !Task.isCancelled, failures < attempts * nodes.count {
                    let node = nodes[index % nodes.count]
                    let (url, headers) = request(node, state)
                    let (events, session) = EventStreamClient().connect(to: url, headers: headers)
                    var received = false
                    await withTaskCancellationHandler {
                        for await event in events {
                            received = true
                            if accept(event, &state) { continuation.yield((event, node)) }
                        }
                    } onCancel: {
                        session.invalidateAndCancel()
                    }
                    session.invalidateAndCancel()
                    failures = received ? 0 : failures + 1
                    index += 1
                    if !received { try? await Task.sleep(for: .milliseconds(200)) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in worker.cancel() }
        }
    }

    /// Opens one node's stream at `url`; the events end when the connection does.
    private func connect(to url: String, headers: [String: String]) -> (AsyncStream<ServerSentEvent>, URLSession) {
        let (events, continuation) = AsyncStream.makeStream(of: ServerSentEvent.self)
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 3_600)
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("text/event-stream", forHTTPHeaderField: "Accept")
        let session = URLSession(configuration: .default, delegate: self, delegateQueue: nil)
        lock.withLock { self.continuation = continuation }
        session.dataTask(with: request).resume()
        return (events, session)
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let events: [ServerSentEvent] = lock.withLock {
            buffer += String(decoding: data, as: UTF8.self)
            var parsed: [ServerSentEvent] = []
            while let range = buffer.range(of: "\n\n") {
                let block = String(buffer[..<range.lowerBound])
                buffer.removeSubrange(..<range.upperBound)
                var id: String?
                var type = "message"
                var payload = ""
                for line in block.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                    if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
                    if line.hasPrefix("data: ") { payload = String(line.dropFirst(6)) }
                }
                if let id { parsed.append(ServerSentEvent(id: id, type: type, data: payload)) }
            }
            return parsed
        }
        let continuation = lock.withLock { self.continuation }
        for event in events { continuation?.yield(event) }
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        let continuation = lock.withLock { () -> AsyncStream<ServerSentEvent>.Continuation? in
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.finish()
    }
}
