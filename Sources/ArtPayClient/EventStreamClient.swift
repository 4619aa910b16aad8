public import Foundation

#if canImport(FoundationNetworking)
    public import FoundationNetworking
#endif

/// One server-sent event of an auction stream.
public struct ServerSentEvent: Sendable, Hashable {
    public var id: Int64
    public var type: String
    public var data: String
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
    /// refused `attempts` times in a row.
    public static func follow(
        _ auction: String, after seq: Int64, nodes: [String], attempts: Int = 20
    ) -> AsyncStream<ServerSentEvent> {
        AsyncStream { continuation in
            let worker = Task {
                var last = seq
                var failures = 0
                var index = 0
                while !Task.isCancelled, failures < attempts * nodes.count {
                    let client = EventStreamClient()
                    var received = false
                    let (events, session) = client.connect(to: nodes[index % nodes.count], auction: auction, after: last)
                    await withTaskCancellationHandler {
                        for await event in events where event.id > last {
                            received = true
                            last = event.id
                            continuation.yield(event)
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

    /// Opens the stream of one node; the events end when the connection does.
    private func connect(to node: String, auction: String, after seq: Int64) -> (AsyncStream<ServerSentEvent>, URLSession) {
        let (events, continuation) = AsyncStream.makeStream(of: ServerSentEvent.self)
        var request = URLRequest(url: URL(string: "\(node)/v1/auctions/\(auction)/events")!, timeoutInterval: 3_600)
        request.setValue("\(seq)", forHTTPHeaderField: "Last-Event-ID")
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
                var id: Int64?
                var type = "message"
                var payload = ""
                for line in block.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = Int64(line.dropFirst(4)) }
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
