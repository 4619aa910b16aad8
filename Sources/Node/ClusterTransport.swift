public import AuctionCore
public import ClusterCore
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// TCP between cluster nodes: mutual TLS 1.3 (`ClusterTLS`), then length-prefixed frames over
/// connections that open with `ClusterHandshake`. Each node keeps one outbound connection per peer
/// address, opened on first send and reopened with exponential backoff after a failure; inbound
/// connections carry nothing until the peer presented a certificate of a trusted cluster CA,
/// claimed the node id that certificate names and proved the cluster secret (a second factor,
/// exchanged inside TLS, so it cannot be tested offline) — all within `handshakeDeadline`.
///
/// Delivery is best effort, like UDP for SWIM: a frame for an unreachable peer is dropped (the
/// membership protocol and forwarding retries are built for that). A refused handshake, a
/// malformed or an oversized frame closes that one connection and is counted; the node keeps
/// serving.
public final class ClusterTransport: Sendable {
    /// Called for every frame from an authenticated peer — `peer` is the node its certificate names —
    /// and `reply` writes on the same connection. Frames that are `isHandledInOrder` are handed over
    /// one at a time in arrival order and hold up the connection's reads until the handler
    /// returns, so the handler must not wait on anything for them; the others run concurrently.
    public typealias FrameHandler =
        @Sendable (_ frame: ClusterFrame, _ peer: NodeID, _ reply: @escaping @Sendable (ClusterFrame) -> Void) async
        -> Void

    public let metrics = TransportMetrics()
    let node: NodeID
    let secret: ClusterSecret
    let tls: ClusterTLS
    private let serverTLS: NIOSSLContext
    private let clientTLS: NIOSSLContext
    /// How long a connection may take from accept (or connect) to an authenticated peer.
    let handshakeDeadline: TimeAmount
    let group: any EventLoopGroup
    let logger: Logger
    /// The local address outbound connections leave from (the node's cluster host), so that peers
    /// and packet filters see each node's traffic under its own address; nil lets the OS choose
    /// (no address given, a wildcard, or a host name).
    let outboundSource: SocketAddress?
    /// In a struct, not bare: see `InstalledFrameHandler`.
    private let handler = Mutex<InstalledFrameHandler?>(nil)
    private let links: OutboundLinks

    /// Fails when the TLS material cannot make a context, or names another node than `node`.
    public init(
        node: NodeID, secret: ClusterSecret, tls: ClusterTLS, group: (any EventLoopGroup)? = nil,
        outboundSource: String? = nil, handshakeDeadline: TimeAmount = .seconds(5), logger: Logger
    ) throws {
        guard tls.node == node else {
            throw ClusterTLSError.certificateNamesAnotherNode(certificate: tls.node, node: node)
        }
        self.node = node
        self.secret = secret
        self.tls = tls
        self.serverTLS = try tls.serverContext()
        self.clientTLS = try tls.clientContext()
        self.handshakeDeadline = handshakeDeadline
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
        self.outboundSource = outboundSource.flatMap { host in
            ["0.0.0.0", "::"].contains(host) ? nil : try? SocketAddress(ipAddress: host, port: 0)
        }
        self.logger = logger
        self.links = OutboundLinks()
    }

    /// Sets where authenticated frames go. Call before `serve` and before sending.
    public func onFrame(_ handler: @escaping FrameHandler) {
        self.handler.withLock { $0 = InstalledFrameHandler(handle: handler) }
    }

    /// Accepts cluster connections on `host:port` until the task is cancelled.
    ///
    /// The listener hands out plain channels, not-yet-reading, and each connection's own task wraps
    /// its channel in a `NIOAsyncChannel`: a `NIOAsyncChannel` made by the listener but never handed
    /// out — accepted in the instant the listener stops — makes NIO trap when it is dropped
    /// ("Deinited NIOAsyncWriter without calling finish()", apple/swift-nio#2637, #3481). A plain
    /// channel dropped that way would stay open, unread, until its peer goes: the listener keeps
    /// the channels it has not handed out yet and closes them when it ends.
    public func serve(host: String, port: Int, bound: (@Sendable (Int) -> Void)? = nil) async throws {
        let waiting = UnservedConnections()
        defer { waiting.closeAll() }
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: false)
            .bind(host: host, port: port) { [serverTLS] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverTLS))
                    try channel.pipeline.syncOperations.addHandler(TLSRefusalCounter(metrics: self.metrics))
                    try Self.addFrameCoders(channel)
                    waiting.insert(channel)
                    return channel
                }
            }
        bound?(server.channel.localAddress?.port ?? port)
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    waiting.remove(connection)
                    group.addTask { await self.serveInbound(connection) }
                }
            }
        }
    }

    /// Sends `frame` to the node listening on `address`, opening a connection when needed. Never
    /// waits for the network; drops the frame while the peer is unreachable.
    public func send(_ frame: ClusterFrame, to address: NodeAddress) {
        links.send(frame.encode(), to: address, transport: self)
    }

    /// Closes every outbound connection.
    public func shutdown() {
        links.closeAll()
    }

    // MARK: - Connections

    static func framed(_ channel: any Channel) throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try addFrameCoders(channel)
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
    }

    static func addFrameCoders(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ClusterFrameCoder()))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(ClusterFrameCoder()))
    }

    /// Serves one accepted connection: wraps it (see `serve`), then lets it read.
    private func serveInbound(_ channel: any Channel) async {
        let connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            connection = try await channel.eventLoop.submit {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }.get()
        } catch {
            channel.close(promise: nil)
            return
        }
        channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                let peer = try await handshake(
                    .acceptor, channel: connection.channel, frames: &frames, outbound: outbound)
                try await exchange(with: peer, frames: &frames, outbound: outbound, writes: nil)
            }
        } catch {
            record(error, peer: "inbound")
        }
    }

    /// Connects to `address`, authenticates, then writes `writes` and reads replies until either side ends.
    func runOutbound(to address: NodeAddress, writes: AsyncStream<ByteBuffer>) async -> Bool {
        do {
            var bootstrap = ClientBootstrap(group: group)
            if let outboundSource { bootstrap = bootstrap.bind(to: outboundSource) }
            let connection =
                try await bootstrap
                .connectTimeout(.seconds(1))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: address.host, port: address.port) { [clientTLS] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: clientTLS, serverHostname: nil))
                        try channel.pipeline.syncOperations.addHandler(TLSRefusalCounter(metrics: self.metrics))
                        return try Self.framed(channel)
                    }
                }
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                let peer = try await handshake(
                    .initiator, channel: connection.channel, frames: &frames, outbound: outbound)
                try await exchange(with: peer, frames: &frames, outbound: outbound, writes: writes)
            }
            return true
        } catch {
            record(error, peer: address.description)
            return false
        }
    }

    /// TLS (done by the pipeline before the first frame arrives), then `ClusterHandshake`; the
    /// peer's claimed id must be the one its certificate names. A connection that has not got
    /// that far within `handshakeDeadline` is closed.
    private func handshake(
        _ role: ClusterHandshake.Role, channel: any Channel,
        frames: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> NodeID {
        let timedOut = Flag()
        let deadline = channel.eventLoop.scheduleTask(in: handshakeDeadline) {
            timedOut.raise()
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        do {
            let peer = try await clusterHandshake(role, frames: &frames, outbound: outbound)
            let certified = try await channel.pipeline.handler(type: NIOSSLHandler.self).map(\.peerCertificate).get()
            guard let certified, ClusterTLS.nodeID(in: certified) == peer else {
                metrics.refusedIdentity()
                throw IdentityMismatch(claimed: peer)
            }
            metrics.established()
            return peer
        } catch {
            // A connection that never completed TLS is counted by `TLSRefusalCounter`.
            guard timedOut.isRaised else { throw error }
            throw HandshakeTimedOut()
        }
    }

    private func clusterHandshake(
        _ role: ClusterHandshake.Role, frames: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> NodeID {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<ClusterHandshake.nonceLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var state = ClusterHandshake(role: role, secret: secret, nonce: nonce, node: node)
        try await outbound.write(state.hello())
        while true {
            guard let frame = try await frames.next() else { throw HandshakeIncomplete() }
            switch state.receive(frame) {
            case .send(let reply):
                try await outbound.write(reply)
            case .established(let peer):
                return peer
            case .fail(let failure, let refusal):
                if let refusal { try? await outbound.write(refusal) }
                metrics.refusedHandshake()
                throw failure
            }
        }
    }

    /// After the handshake: reads frames and hands them on, while writing `writes` (outbound
    /// connections) and replies (both directions) on the same connection.
    private func exchange(
        with peer: NodeID, frames: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, writes: AsyncStream<ByteBuffer>?
    ) async throws {
        let (replies, replyContinuation) = AsyncStream.makeStream(
            of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(4_096))
        let handler = self.handler.withLock { $0?.handle }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await reply in replies { try await outbound.write(reply) }
            }
            if let writes {
                group.addTask {
                    for await frame in writes { try await outbound.write(frame) }
                    throw WritesFinished()
                }
            }
            defer {
                replyContinuation.finish()
                group.cancelAll()
            }
            while let bytes = try await frames.next() {
                let frame: ClusterFrame
                do {
                    frame = try ClusterFrame.decode(bytes)
                } catch {
                    metrics.malformedFrame()
                    throw error
                }
                guard let handler else { continue }
                let reply: @Sendable (ClusterFrame) -> Void = { reply in replyContinuation.yield(reply.encode()) }
                if frame.isHandledInOrder {
                    await handler(frame, peer, reply)
                } else {
                    group.addTask { await handler(frame, peer, reply) }
                }
            }
        }
    }

    private func record(_ error: any Error, peer: String) {
        switch error {
        case is ClusterFrameCoder.FrameTooLarge:
            metrics.oversizedFrame()
            logger.warning("closed a connection that sent an oversized frame", metadata: ["peer": "\(peer)"])
        case let failure as ClusterHandshake.Failure:
            logger.warning("refused a cluster connection", metadata: ["peer": "\(peer)", "reason": "\(failure)"])
        case let mismatch as IdentityMismatch:
            logger.warning(
                "refused a cluster peer whose certificate names another node",
                metadata: ["peer": "\(peer)", "claimed": "\(mismatch.claimed)"])
        case is NIOSSLError, is BoringSSLError, is HandshakeTimedOut:
            logger.warning("refused a cluster connection at TLS", metadata: ["peer": "\(peer)", "reason": "\(error)"])
        case let wire as WireError:
            logger.warning(
                "closed a connection that sent a malformed frame", metadata: ["peer": "\(peer)", "reason": "\(wire)"])
        case is WritesFinished, is CancellationError:
            break
        default:
            logger.debug("cluster connection ended", metadata: ["peer": "\(peer)", "error": "\(error)"])
        }
    }

    struct HandshakeIncomplete: Error {}
    struct HandshakeTimedOut: Error {}
    /// Set once, read from another thread.
    final class Flag: Sendable {
        private let raised = Atomic<Bool>(false)
        var isRaised: Bool { raised.load(ordering: .relaxed) }
        func raise() { raised.store(true, ordering: .relaxed) }
    }
    struct IdentityMismatch: Error {
        var claimed: NodeID
    }
    struct WritesFinished: Error {}
}

/// Counts a connection that ends before its TLS handshake completed — plaintext, an untrusted,
/// expired or missing certificate, or silence until the handshake deadline — as one TLS refusal.
/// In the pipeline, right after the TLS handler, so the count does not depend on who reads the
/// connection's frames or when.
final class TLSRefusalCounter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let metrics: TransportMetrics
    private var settled = false

    init(metrics: TransportMetrics) {
        self.metrics = metrics
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { settled = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        refuseOnce()
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        refuseOnce()
        context.fireChannelInactive()
    }

    private func refuseOnce() {
        guard !settled else { return }
        settled = true
        metrics.refusedTLSHandshake()
    }
}

/// The outbound connection of each peer address, with reconnect backoff.
final class OutboundLinks: Sendable {
    private struct Link {
        var writes: AsyncStream<ByteBuffer>.Continuation
        var generation: Int
        /// The connection's task (connect, handshake, then writes and replies): cancelled by
        /// `closeAll`, so none outlives the transport.
        var task: Task<Void, Never>?
    }

    private struct State {
        var links: [NodeAddress: Link] = [:]
        var failures: [NodeAddress: (count: Int, retryAt: ContinuousClock.Instant)] = [:]
        var nextGeneration = 0
        var closed = false
    }

    private let state = Mutex(State())

    func send(_ frame: ByteBuffer, to address: NodeAddress, transport: ClusterTransport) {
        let start: (AsyncStream<ByteBuffer>, Int)? = state.withLock { state in
            if state.closed { return nil }
            if let link = state.links[address] {
                link.writes.yield(frame)
                return nil
            }
            if let failure = state.failures[address], ContinuousClock.now < failure.retryAt { return nil }
            let (stream, continuation) = AsyncStream.makeStream(
                of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(1_024))
            state.nextGeneration += 1
            state.links[address] = Link(writes: continuation, generation: state.nextGeneration)
            continuation.yield(frame)
            return (stream, state.nextGeneration)
        }
        guard let (stream, generation) = start else { return }
        let task = Task {
            let succeeded = await transport.runOutbound(to: address, writes: stream)
            self.ended(address, generation: generation, succeeded: succeeded)
        }
        let orphaned = state.withLock { state in
            guard state.links[address]?.generation == generation else { return true }
            state.links[address]?.task = task
            return false
        }
        // Closed (or ended) before the task was recorded: nobody else will cancel it.
        if orphaned { task.cancel() }
    }

    private func ended(_ address: NodeAddress, generation: Int, succeeded: Bool) {
        state.withLock { state in
            if state.links[address]?.generation == generation {
                state.links[address]?.writes.finish()
                state.links[address] = nil
            }
            if succeeded {
                state.failures[address] = nil
            } else {
                let count = (state.failures[address]?.count ?? 0) + 1
                // 100 ms, 200 ms, … capped at 2 s.
                let delay = Duration.milliseconds(min(2_000, 100 << min(count - 1, 5)))
                state.failures[address] = (count, ContinuousClock.now.advanced(by: delay))
            }
        }
    }

    func closeAll() {
        let tasks = state.withLock { state in
            state.closed = true
            for link in state.links.values { link.writes.finish() }
            defer { state.links = [:] }
            return state.links.values.compactMap(\.task)
        }
        for task in tasks { task.cancel() }
    }
}

/// The frame handler, kept in a struct inside its `Mutex`: a closure stored bare as a `Mutex`'s
/// value gains two reabstraction thunks on every `withLock` (the inout value is converted to the
/// generic representation and back), so every connection would have called through a longer chain.
private struct InstalledFrameHandler: Sendable {
    let handle: ClusterTransport.FrameHandler
}

/// Accepted connections the listener has not handed to a task yet (see `ClusterTransport.serve`).
/// A connection accepted before the listener closed can still be set up on its own event loop
/// after it: once closed, this closes what arrives.
private final class UnservedConnections: Sendable {
    private let state = Mutex<(channels: [ObjectIdentifier: any Channel], closed: Bool)>(([:], false))

    func insert(_ channel: any Channel) {
        let keep = state.withLock { state in
            if !state.closed { state.channels[ObjectIdentifier(channel)] = channel }
            return !state.closed
        }
        if !keep { channel.close(promise: nil) }
    }

    func remove(_ channel: any Channel) {
        _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func closeAll() {
        let left = state.withLock { state in
            defer {
                state.channels.removeAll()
                state.closed = true
            }
            return Array(state.channels.values)
        }
        for channel in left {
            channel.close(promise: nil)
        }
    }
}
