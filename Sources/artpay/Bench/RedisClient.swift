import NIOCore
import NIOPosix
import Synchronization

/// A Redis reply (RESP2).
enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk(String?)
    case array([RESPValue]?)

    var string: String? {
        switch self {
        case .simple(let text), .bulk(.some(let text)): text
        case .integer(let value): String(value)
        default: nil
        }
    }

    var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulk(.some(let text)), .simple(let text): Int64(text)
        default: nil
        }
    }
}

struct RedisError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Decodes RESP2 replies from the byte stream; a reply split across reads waits for the rest.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var copy = buffer
        guard let value = try Self.parse(&copy) else { return .needMoreData }
        buffer.moveReaderIndex(to: copy.readerIndex)
        context.fireChannelRead(NIOAny(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        try decode(context: context, buffer: &buffer)
    }

    /// One whole reply from the front of `buffer`, or nil (buffer position unspecified) when incomplete.
    static func parse(_ buffer: inout ByteBuffer) throws -> RESPValue? {
        guard let kind = buffer.readInteger(as: UInt8.self), let line = readLine(&buffer) else { return nil }
        switch kind {
        case UInt8(ascii: "+"): return .simple(line)
        case UInt8(ascii: "-"): return .error(line)
        case UInt8(ascii: ":"):
            guard let value = Int64(line) else { throw RedisError("bad integer reply '\(line)'") }
            return .integer(value)
        case UInt8(ascii: "$"):
            guard let length = Int(line) else { throw RedisError("bad bulk length '\(line)'") }
            if length < 0 { return .bulk(nil) }
            guard buffer.readableBytes >= length + 2, let text = buffer.readString(length: length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 2)
            return .bulk(text)
        case UInt8(ascii: "*"):
            guard let count = Int(line) else { throw RedisError("bad array length '\(line)'") }
            if count < 0 { return .array(nil) }
            var elements: [RESPValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count {
                guard let element = try parse(&buffer) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw RedisError("unknown reply type \(kind)")
        }
    }

    private static func readLine(_ buffer: inout ByteBuffer) -> String? {
        guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\r")),
            end + 1 < buffer.writerIndex
        else { return nil }
        let line = buffer.readString(length: end - buffer.readerIndex)
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }
}

/// A command on its way to Redis with the promise of its reply and its deadline.
struct RedisRequest: Sendable {
    var command: ByteBuffer
    var reply: EventLoopPromise<RESPValue>
    var timeout: TimeAmount
}

/// Matches replies to requests in order (Redis answers a connection's commands in the order sent,
/// so many may be in flight). A request whose deadline passes fails at once; its reply, when it
/// comes, is matched and dropped.
final class RedisHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private var pending = CircularBuffer<(promise: EventLoopPromise<RESPValue>, timeout: Scheduled<Void>)>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        let reply = request.reply
        let seconds = Double(request.timeout.nanoseconds) / 1e9
        let timeout = context.eventLoop.scheduleTask(in: request.timeout) {
            reply.fail(RedisError("no answer from Redis within \(seconds) s"))
        }
        pending.append((reply, timeout))
        context.write(wrapOutboundOut(request.command), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let next = pending.popFirst() else {
            context.close(promise: nil)
            return
        }
        next.timeout.cancel()
        next.promise.succeed(value)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError("the Redis connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        while let next = pending.popFirst() {
            next.timeout.cancel()
            next.promise.fail(error)
        }
    }
}

/// One connection to Redis; commands may be sent from any task, concurrently (pipelined).
final class RedisConnection: Sendable {
    let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func connect(host: String, port: Int) async throws -> RedisConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                    try channel.pipeline.syncOperations.addHandler(RedisHandler())
                }
            }
            .connect(host: host, port: port).get()
        return RedisConnection(channel: channel)
    }

    /// Sends one command; its reply, or an error reply thrown as `RedisError`, within `timeout`.
    func send(_ arguments: [String], timeout: Duration) async throws -> RESPValue {
        var buffer = channel.allocator.buffer(capacity: 32 + arguments.reduce(0) { $0 + $1.utf8.count + 16 })
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
        let reply = channel.eventLoop.makePromise(of: RESPValue.self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { reply.fail($0) }
        let (seconds, attoseconds) = timeout.components
        channel.writeAndFlush(
            RedisRequest(
                command: buffer, reply: reply,
                timeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)),
            promise: written)
        let value = try await reply.futureResult.get()
        if case .error(let message) = value { throw RedisError(message) }
        return value
    }

    func close() async {
        try? await channel.close()
    }
}

/// A few connections used in turn; a closed one is replaced on its next use.
final class RedisPool: Sendable {
    let host: String
    let port: Int
    let timeout: Duration
    private let connections: Mutex<[RedisConnection?]>
    private let next = Atomic<Int>(0)

    init(host: String, port: Int, size: Int, timeout: Duration = .seconds(2)) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connections = Mutex(Array(repeating: nil, count: max(1, size)))
    }

    func call(_ arguments: [String]) async throws -> RESPValue {
        let count = connections.withLock { $0.count }
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue % count
        return try await connection(index).send(arguments, timeout: timeout)
    }

    private func connection(_ index: Int) async throws -> RedisConnection {
        if let existing = connections.withLock({ $0[index] }), existing.channel.isActive { return existing }
        let fresh = try await RedisConnection.connect(host: host, port: port)
        let winner = connections.withLock { connections -> RedisConnection in
            if let other = connections[index], other.channel.isActive { return other }
            connections[index] = fresh
            return fresh
        }
        if winner !== fresh { await fresh.close() }
        return winner
    }

    func close() async {
        let all = connections.withLock { connections in
            defer { connections = connections.map { _ in nil } }
            return connections.compactMap { $0 }
        }
        for connection in all { await connection.close() }
    }
}
