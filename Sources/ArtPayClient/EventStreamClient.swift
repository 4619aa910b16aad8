import AsyncHTTPClient
public import Foundation
import NIOCore

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
public enum EventStreamClient {
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
    /// connection ends; give up after `attempts` rounds of nodes that sent nothing. Cancelling the
    /// consumer cancels the open request.
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
                    var received = false
                    var parser = ServerSentEventParser()
                    do {
                        var streamRequest = HTTPClientRequest(url: url)
                        for (name, value) in headers { streamRequest.headers.add(name: name, value: value) }
                        streamRequest.headers.add(name: "Accept", value: "text/event-stream")
                        let response = try await APIClient.http.execute(streamRequest, timeout: longestStream)
                        if response.status == .ok {
                            for try await chunk in response.body {
                                for event in parser.consume(chunk.readableBytesView) {
                                    received = true
                                    if accept(event, &state) { continuation.yield((event, node)) }
                                }
                            }
                        }
                    } catch {
                        // The node is gone, refused or the stream broke: the next node is tried.
                    }
                    failures = received ? 0 : failures + 1
                    index += 1
                    if !received { try? await Task.sleep(for: .milliseconds(200)) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in worker.cancel() }
        }
    }

    /// How long one connection to a node's stream may stay open before it is opened again.
    static let longestStream = TimeAmount.hours(6)
}

/// Splits a `text/event-stream` body into events as its bytes arrive (the subset the nodes send:
/// `id:`, `event:` and one `data:` line per event, events separated by a blank line).
struct ServerSentEventParser {
    private var buffer: [UInt8] = []

    /// The events completed by `bytes`; a partial event stays buffered for the next call.
    mutating func consume(_ bytes: some Sequence<UInt8>) -> [ServerSentEvent] {
        buffer.append(contentsOf: bytes)
        var events: [ServerSentEvent] = []
        var start = 0
        var index = 0
        while index + 1 < buffer.count {
            if buffer[index] == UInt8(ascii: "\n"), buffer[index + 1] == UInt8(ascii: "\n") {
                if let event = Self.event(String(decoding: buffer[start..<index], as: UTF8.self)) {
                    events.append(event)
                }
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        buffer.removeFirst(start)
        return events
    }

    private static func event(_ block: String) -> ServerSentEvent? {
        var id: String?
        var type = "message"
        var payload = ""
        for line in block.split(separator: "\n") {
            if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
            if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { payload = String(line.dropFirst(6)) }
        }
        return id.map { ServerSentEvent(id: $0, type: type, data: payload) }
    }
}
