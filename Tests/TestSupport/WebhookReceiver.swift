import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Node
import Payments
import Synchronization

/// A webhook endpoint for tests, on a real loopback socket: checks every delivery's signature and
/// keeps the events it took, in arrival order. It can be told to fail (answer 500) or to hang.
public final class WebhookReceiver: Sendable {
    /// What arrived, in order.
    public struct Received: Sendable, Hashable {
        public var cursor: String
        public var type: String
        public var auctionId: String
        public var seq: Int
        public var bidId: String?
    }

    public enum Mode: Sendable {
        case accept
        /// Answer 500 to the next `count` deliveries, then accept.
        case fail(count: Int)
        /// Hold every delivery this long before accepting.
        case hang(Duration)
    }

    private struct State {
        var mode: Mode = .accept
        var taken: [Received] = []
        var attempts = 0
        var badSignatures = 0
    }

    public let secret: String
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)
    public let port: Int

    private init(secret: String, port: Int) {
        self.secret = secret
        self.port = port
    }

    public var url: String { "http://127.0.0.1:\(port)/hook" }
    public var taken: [Received] { state.withLock { $0.taken } }
    public var attempts: Int { state.withLock { $0.attempts } }
    public var badSignatures: Int { state.withLock { $0.badSignatures } }

    public func set(_ mode: Mode) { state.withLock { $0.mode = mode } }

    /// Starts a receiver on a free loopback port.
    public static func start(secret: String) async throws -> WebhookReceiver {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let box = Mutex<WebhookReceiver?>(nil)
        let router = Router()
        router.post("/hook") { request, context -> HTTPResponse.Status in
            guard let receiver = box.withLock({ $0 }) else { return .serviceUnavailable }
            let body = Array(try await request.body.collect(upTo: 1 << 20).readableBytesView)
            return await receiver.receive(body, signature: request.headers[HTTPField.Name("ArtPay-Signature")!])
        }
        var logger = Logger(label: "test.webhook-receiver")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let running = Task<Void, Never> { try? await app.runService() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            running.cancel()
            throw CancellationError()
        }
        let receiver = WebhookReceiver(secret: secret, port: port)
        receiver.task.withLock { $0 = running }
        box.withLock { $0 = receiver }
        return receiver
    }

    public func stop() {
        task.withLock { $0?.cancel() }
    }

    private func receive(_ body: [UInt8], signature: String?) async -> HTTPResponse.Status {
        let now = Int64(Date().timeIntervalSince1970)
        do {
            try WebhookSignature.verify(body, headerValue: signature, secrets: [secret], now: now)
        } catch {
            state.withLock { $0.badSignatures += 1 }
            return .badRequest
        }
        let mode = state.withLock { state -> Mode in
            state.attempts += 1
            let mode = state.mode
            if case .fail(let count) = mode { state.mode = count > 1 ? .fail(count: count - 1) : .accept }
            return mode
        }
        switch mode {
        case .fail: return .internalServerError
        case .hang(let duration): try? await Task.sleep(for: duration)
        case .accept: break
        }
        guard let event = try? JSONDecoder().decode(FeedEvent.self, from: Data(body)) else { return .badRequest }
        state.withLock {
            $0.taken.append(
                Received(
                    cursor: event.cursor, type: event.type, auctionId: event.auctionId, seq: Int(event.seq),
                    bidId: event.bidId))
        }
        return .noContent
    }
}
