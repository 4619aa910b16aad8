import ArtPayClient
public import HummingbirdCore
import HummingbirdWebSocket
public import Logging
public import NIOCore
import NIOHTTP1
import NIOHTTPTypes
public import Prometheus
import Synchronization

/// How many HTTP connections a node keeps, and how long a client may take to send a request.
///
/// Why: every connection costs a file descriptor and memory, and a client that opens connections
/// and never finishes a request must not be able to use them all up (when a process runs out of
/// descriptors it can no longer accept anyone, nor open a store connection). The caps are below the
/// descriptor limit; the deadlines bound how long an unfinished request holds a slot.
public struct ConnectionLimits: Sendable, Hashable {
    /// Connections open at once; beyond it a new connection gets a 503 and is closed.
    public var maximumConnections: Int
    /// Connections open at once from one client address (0: no per-address cap — behind a proxy
    /// every client has the proxy's address).
    public var maximumConnectionsPerAddress: Int
    /// A new connection's first request head must be complete within this (then 408 and close).
    public var requestHeadTimeout: Duration
    /// A request's body must be complete within this from its head (then the connection closes).
    public var requestBodyTimeout: Duration
    /// A keep-alive connection with no request in progress is closed after this.
    public var idleTimeout: Duration

    public init(
        maximumConnections: Int = 10_000, maximumConnectionsPerAddress: Int = 1_024,
        requestHeadTimeout: Duration = .seconds(10), requestBodyTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(60)
    ) {
        self.maximumConnections = maximumConnections
        self.maximumConnectionsPerAddress = maximumConnectionsPerAddress
        self.requestHeadTimeout = requestHeadTimeout
        self.requestBodyTimeout = requestBodyTimeout
        self.idleTimeout = idleTimeout
    }

    /// Descriptors kept free for everything that is not an HTTP client: store connections, cluster
    /// links, files, the listening sockets.
    public static let reservedDescriptors = 512

    /// The total cap that fits under `descriptorLimit` (the process's `RLIMIT_NOFILE`): `wanted`,
    /// or fewer when the limit is lower, never below 16.
    public static func maximumConnections(wanted: Int, descriptorLimit: Int) -> Int {
        max(16, min(wanted, descriptorLimit - reservedDescriptors))
    }
}

/// Counts open HTTP connections in total and per client address, and what the guard refused or
/// closed; shared by every connection of a listener. Thread-safe (connections live on several
/// event loops).
public final class ConnectionCounter: Sendable {
    public enum Admission: Sendable, Hashable {
        case admitted
        case refusedTotal
        case refusedPerAddress
    }

    /// Why the guard ended a connection, for the metrics.
    enum Closing: String, CaseIterable {
        case refusedTotal = "too_many_connections"  // RefusedBeforeWork.tooManyConnections
        case refusedPerAddress = "too_many_connections_from_address"
        case headTimeout = "request_head_timeout"
        case bodyTimeout = "request_body_timeout"
        case parseError = "malformed_http"
    }

    private struct State {
        var open = 0
        var byAddress: [String: Int] = [:]
    }

    /// The series in the node's registry.
    private struct Metrics: Sendable {
        let open: Gauge
        let limit: Gauge
        let closings: [Closing: Counter]

        init(_ registry: PrometheusCollectorRegistry) {
            open = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "artpay", subsystem: "http", metricName: "connections_open", unitName: "",
                    helpText: "HTTP connections open now."))
            limit = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "artpay", subsystem: "http", metricName: "connections_limit", unitName: "",
                    helpText: "The most HTTP connections a node keeps open."))
            let closed = MetricNameDescriptor(
                namespace: "artpay", subsystem: "http", metricName: "connections_closed", unitName: "total",
                helpText: "Connections refused or closed by the guard, by reason.")
            closings = Dictionary(
                uniqueKeysWithValues: Closing.allCases.map {
                    ($0, registry.makeCounter(descriptor: closed, labels: [("reason", $0.rawValue)]))
                })
        }
    }

    public let limits: ConnectionLimits
    private let state = Mutex(State())
    private let metrics: Metrics

    /// `registry`: the node's, where its `artpay_http_connections_*` series go.
    public init(limits: ConnectionLimits, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.limits = limits
        self.metrics = Metrics(registry)
    }

    /// Takes a slot for a connection from `address`, or says why there is none.
    public func admit(_ address: String) -> Admission {
        let limits = self.limits
        return state.withLock { state in
            if state.open >= limits.maximumConnections { return .refusedTotal }
            let fromAddress = state.byAddress[address, default: 0]
            if limits.maximumConnectionsPerAddress > 0, fromAddress >= limits.maximumConnectionsPerAddress {
                return .refusedPerAddress
            }
            state.open += 1
            state.byAddress[address] = fromAddress + 1
            return .admitted
        }
    }

    /// Gives back the slot of an admitted connection that closed.
    public func release(_ address: String) {
        state.withLock { state in
            state.open -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }

    func count(_ closing: Closing) {
        metrics.closings[closing]?.increment()
    }

    /// Connections open now.
    public var open: Int { state.withLock { $0.open } }

    /// Connections open now from `address`.
    public func open(from address: String) -> Int { state.withLock { $0.byAddress[address, default: 0] } }

    /// Sets the gauges in the registry (the closings count as they happen).
    func updateGauges() {
        metrics.open.set(Int64(open))
        metrics.limit.set(Int64(limits.maximumConnections))
    }
}

/// Wraps a Hummingbird child channel (HTTP/1 with or without the WebSocket upgrade) with the
/// connection guard: the caps of ``ConnectionLimits``, a deadline on the first request's head and
/// on every request's body, and an answer-and-close on malformed HTTP.
///
/// Why a wrapper and not only Hummingbird's options: until the first request head has arrived, the
/// upgradable pipeline has no idle timer, and a parse error there is neither answered nor closed —
/// a connection that sends nothing, or garbage, stayed open for good.
public struct GuardedHTTPChannel<Inner: ServerChildChannel>: ServerChildChannel {
    public typealias Value = Inner.Value
    let inner: Inner
    let counter: ConnectionCounter

    public init(_ inner: Inner, counter: ConnectionCounter) {
        self.inner = inner
        self.counter = counter
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        let admission = counter.admit(address)
        let firstRequest = FirstRequestGuard(counter: counter, admission: admission, limits: counter.limits)
        do {
            try channel.pipeline.syncOperations.addHandler(firstRequest, position: .first)
        } catch {
            if admission == .admitted { counter.release(address) }
            return channel.eventLoop.makeFailedFuture(error)
        }
        if admission == .admitted {
            let counter = self.counter
            channel.closeFuture.whenComplete { _ in counter.release(address) }
        }
        return inner.setup(channel: channel, logger: logger).assumeIsolatedUnsafeUnchecked().flatMapThrowing { value in
            // Parse errors surface as errors fired by the request decoder; watch right behind it.
            let decoder = try channel.pipeline.syncOperations.context(
                handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(
                ParseErrorWatcher(firstRequest: firstRequest), position: .after(decoder.handler))
            return value
        }.nonisolated()
    }

    /// The logger here only hears about the connection itself (the upgrade negotiation failing
    /// because the guard closed a connection, a client going away), which clients cause at will: at
    /// error level, a flood of idle connections became a flood of log lines. Requests log through
    /// the router's logger as before.
    public func handle(value: Value, logger: Logger) async {
        var quiet = logger
        quiet.logLevel = .critical
        await inner.handle(value: value, logger: quiet)
    }
}

extension ConnectionLimits {
    /// The part-level handler to pass as Hummingbird's `additionalChannelHandlers`.
    func exchangeGuard(counter: ConnectionCounter) -> ExchangeGuard {
        ExchangeGuard(timeout: requestBodyTimeout, counter: counter)
    }
}

/// First in the pipeline, on raw bytes: refuses a connection over the caps with a 503, closes one
/// whose first request head is not complete within the deadline with a 408, and answers a parse
/// error with a 400 and closes. Once the first answer is on its way, later requests are Hummingbird's
/// (its idle timer runs from then on) and ``ExchangeGuard``'s.
final class FirstRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Phase {
        case waitingForHead
        case headReceived
        case answered
        case closing
    }

    private let counter: ConnectionCounter
    private let admission: ConnectionCounter.Admission
    private let limits: ConnectionLimits
    private var phase = Phase.waitingForHead
    private var deadline: Scheduled<Void>?
    /// The last bytes seen, to find `\r\n\r\n` across reads.
    private var tail: [UInt8] = []
    private weak var context: ChannelHandlerContext?

    init(counter: ConnectionCounter, admission: ConnectionCounter.Admission, limits: ConnectionLimits) {
        self.counter = counter
        self.admission = admission
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    private func start(_ context: ChannelHandlerContext) {
        guard deadline == nil, phase == .waitingForHead else { return }
        switch admission {
        case .admitted:
            let loop = context.eventLoop.assumeIsolatedUnsafeUnchecked()
            deadline = loop.scheduleTask(in: .init(limits.requestHeadTimeout)) { [weak self] in
                guard let self, let context = self.context, self.phase == .waitingForHead else { return }
                self.counter.count(.headTimeout)
                self.answerAndClose(
                    context, status: "408 Request Timeout", code: "request_head_timeout",
                    detail: "The request head did not arrive within \(limits.requestHeadTimeout.components.seconds) s.")
            }
        case .refusedTotal:
            counter.count(.refusedTotal)
            answerAndClose(
                context, status: "503 Service Unavailable", code: RefusedBeforeWork.tooManyConnections.rawValue,
                detail: "This node has as many connections as it keeps; retry shortly or use another node.",
                retryAfter: true)
        case .refusedPerAddress:
            counter.count(.refusedPerAddress)
            answerAndClose(
                context, status: "503 Service Unavailable", code: RefusedBeforeWork.tooManyConnections.rawValue,
                detail: "Too many connections from your address; reuse connections or retry shortly.",
                retryAfter: true)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .closing:
            return
        case .waitingForHead:
            if endsHead(unwrapInboundIn(data)) {
                phase = .headReceived
                deadline?.cancel()
                deadline = nil
            }
        case .headReceived, .answered:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if phase == .waitingForHead || phase == .headReceived {
            phase = .answered
            deadline?.cancel()
            deadline = nil
        }
        context.write(data, promise: promise)
    }

    /// Called by ``ParseErrorWatcher``. An error before any request head was decoded is answered by
    /// nobody else (the upgrade negotiation just fails), so the guard answers 400 and closes; after
    /// one, Hummingbird answers the 400 (after the earlier answers) and the guard only makes sure
    /// the connection really closes.
    func parseError(afterDecodedHead: Bool) {
        guard let context, phase != .closing else { return }
        counter.count(.parseError)
        guard afterDecodedHead || phase == .answered else {
            answerAndClose(
                context, status: "400 Bad Request", code: "malformed_http", detail: "The request is not valid HTTP/1.1."
            )
            return
        }
        phase = .closing
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: .seconds(1)) {
            context.close(promise: nil)
        }
    }

    private func endsHead(_ buffer: ByteBuffer) -> Bool {
        var window = tail
        window.append(contentsOf: buffer.readableBytesView)
        if window.count >= 4 {
            for index in 0...(window.count - 4)
            where window[index] == 13 && window[index + 1] == 10 && window[index + 2] == 13 && window[index + 3] == 10 {
                return true
            }
        }
        tail = Array(window.suffix(3))
        return false
    }

    private func answerAndClose(
        _ context: ChannelHandlerContext, status: String, code: String, detail: String, retryAfter: Bool = false
    ) {
        phase = .closing
        deadline?.cancel()
        deadline = nil
        let statusCode = Int(status.prefix(3)) ?? 400
        let body =
            "{\"code\":\(JSONText.quoted(code)),\"detail\":\(JSONText.quoted(detail)),\"status\":\(statusCode),"
            + "\"title\":\(JSONText.quoted(String(status.dropFirst(4)))),"
            + "\"type\":\(JSONText.quoted("https://artpay.dev/problems/\(code)"))}"
        var head = "HTTP/1.1 \(status)\r\nContent-Type: application/problem+json\r\nConnection: close\r\n"
        if retryAfter { head += "Retry-After: 1\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\n\r\n"
        let bytes = context.channel.allocator.buffer(string: head + body)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(bytes))).assumeIsolatedUnsafeUnchecked().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Sits right behind the HTTP request decoder and tells the ``FirstRequestGuard`` about parse
/// errors (a conflicting `Content-Length` and `Transfer-Encoding`, an over-long request line, a NUL
/// in a header…); the error goes on as before.
final class ParseErrorWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    private let firstRequest: FirstRequestGuard
    private var decodedHead = false

    init(firstRequest: FirstRequestGuard) {
        self.firstRequest = firstRequest
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !decodedHead, case .head = unwrapInboundIn(data) { decodedHead = true }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError { firstRequest.parseError(afterDecodedHead: decodedHead) }
        context.fireErrorCaught(error)
    }
}

/// Watches each exchange on a connection, at the level of HTTP parts:
/// - a request's body must be complete within `timeout` of its head, else the connection closes —
///   a client that sends a body a byte a minute would otherwise hold it as long as it likes
///   (Hummingbird's idle timer does not run while a request is in progress);
/// - a client that closes its side while an answer is still streaming (an event stream) has gone:
///   the connection closes, so the stream and its slot end now rather than at the next heartbeat.
final class ExchangeGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: Duration
    private let counter: ConnectionCounter
    private var deadline: Scheduled<Void>?
    private var responding = false

    init(timeout: Duration, counter: ConnectionCounter) {
        self.timeout = timeout
        self.counter = counter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            deadline?.cancel()
            let counter = self.counter
            deadline = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: .init(timeout)) {
                counter.count(.bodyTimeout)
                context.close(promise: nil)
            }
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responding = true
        case .end: responding = false
        case .body: break
        }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed, responding {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}

extension GatewayAPI {
    /// What a node's HTTP listener runs: HTTP/1.1 with the WebSocket routes of ``webSocketRouter()``,
    /// behind the connection guard (the caps and deadlines of `configuration.connections`).
    public func httpServer() -> HTTPServerBuilder {
        let webSocketResponder = webSocketRouter().buildResponder()
        let counter = connections
        let limits = counter.limits
        return HTTPServerBuilder { responder in
            GuardedHTTPChannel(
                HTTP1WebSocketUpgradeChannel(
                    responder: responder, webSocketResponder: webSocketResponder,
                    configuration: .init(
                        http1: .init(
                            additionalChannelHandlers: [limits.exchangeGuard(counter: counter)],
                            idleTimeout: .init(limits.idleTimeout)))),
                counter: counter)
        }
    }
}
