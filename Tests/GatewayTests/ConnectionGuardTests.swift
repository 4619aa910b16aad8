import Foundation
import HummingbirdTesting
import NIOCore
import NIOPosix
import Synchronization
import TestSupport
import Testing

@testable import Gateway

/// The HTTP connection guard over real sockets: caps per address and in total (the node keeps
/// serving the connections it has and anyone else), deadlines on an unfinished request, and an
/// answer-and-close on malformed HTTP.
@Suite(.serialized) struct ConnectionGuardTests {
    /// `artpay_http_connections_closed_total{reason=…}` in the node's registry (read directly: a
    /// full node has no connection to spare for `/metrics`).
    static func closings(_ harness: GatewayHarness, _ reason: String) -> Double {
        let text = harness.api.registry.emitToString()
        let line = text.split(separator: "\n").first {
            $0.hasPrefix("artpay_http_connections_closed_total{reason=\"\(reason)\"}")
        }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    static let limits = ConnectionLimits(
        maximumConnections: 30, maximumConnectionsPerAddress: 10, requestHeadTimeout: .seconds(1),
        requestBodyTimeout: .seconds(1), idleTimeout: .seconds(60))
    /// For the caps: idle connections must stay until the test is done with them, however slowly
    /// a busy machine runs it.
    static let patientLimits = ConnectionLimits(
        maximumConnections: 30, maximumConnectionsPerAddress: 10, requestHeadTimeout: .seconds(120),
        requestBodyTimeout: .seconds(120), idleTimeout: .seconds(120))

    @Test func perAddressCap_refusesBeyondIt_andOtherAddressesAreServed() async throws {
        try await GatewayHarness.run(live: true, connections: Self.patientLimits) { client, harness in
            let port = try #require(client.port)
            var idle: [RawConnection] = []
            for _ in 0..<10 { idle.append(try await RawConnection.open(port: port, from: "127.0.0.3")) }
            try await eventually("10 connections counted") { harness.api.connections.open(from: "127.0.0.3") == 10 }
            let refused = try await RawConnection.open(port: port, from: "127.0.0.3")
            try await eventually("the 11th from the same address is answered and closed") { refused.isClosed }
            #expect(refused.text.hasPrefix("HTTP/1.1 503"))
            #expect(refused.text.contains("too_many_connections"))
            #expect(refused.text.contains("Retry-After: 1"))
            // Another address is served meanwhile.
            let other = try await RawConnection.open(port: port, from: "127.0.0.2")
            other.send("GET /health/live HTTP/1.1\r\nHost: node\r\n\r\n")
            try await eventually("another address is served") { other.text.hasPrefix("HTTP/1.1 200") }
            #expect(
                Self.closings(harness, "too_many_connections_from_address") == 1,
                "artpay_http_connections_closed_total counts the refusal")
            // A connection that closes gives its slot back.
            idle[0].close()
            try await eventually("a slot is free again") { harness.api.connections.open(from: "127.0.0.3") == 9 }
            let again = try await RawConnection.open(port: port, from: "127.0.0.3")
            again.send("GET /health/live HTTP/1.1\r\nHost: node\r\n\r\n")
            try await eventually("the address is served again") { again.text.hasPrefix("HTTP/1.1 200") }
            for connection in idle + [other, again] { connection.close() }
        }
    }

    @Test func connectionsThatSendNothing_get408_andFreeTheirSlots() async throws {
        try await GatewayHarness.run(live: true, connections: Self.limits) { client, harness in
            let port = try #require(client.port)
            var idle: [RawConnection] = []
            for _ in 0..<5 { idle.append(try await RawConnection.open(port: port, from: "127.0.0.3")) }
            for connection in idle {
                try await eventually("an idle connection is closed") { connection.isClosed }
                #expect(connection.text.hasPrefix("HTTP/1.1 408"))
            }
            try await eventually("their slots are free") { harness.api.connections.open(from: "127.0.0.3") == 0 }
            #expect(Self.closings(harness, "request_head_timeout") >= 5)
        }
    }

    @Test func totalCap_refusesNewConnections_whileOpenOnesKeepWorking() async throws {
        try await GatewayHarness.run(live: true, connections: Self.patientLimits) { client, harness in
            let port = try #require(client.port)
            // A client that was there before the flood, with a keep-alive connection.
            let regular = try await RawConnection.open(port: port, from: "127.0.0.9")
            regular.send("GET /health/live HTTP/1.1\r\nHost: node\r\n\r\n")
            try await eventually("served before the flood") { regular.text.hasPrefix("HTTP/1.1 200") }
            var flood: [RawConnection] = []
            for address in 2...4 {
                var fromAddress: [RawConnection] = []
                for _ in 0..<10 {
                    let connection = try await RawConnection.open(port: port, from: "127.0.0.\(address)")
                    fromAddress.append(connection)
                    // Each one settles (counted open, or refused) before the next.
                    try await eventually("a connection settles") {
                        connection.isClosed
                            || harness.api.connections.open(from: "127.0.0.\(address)")
                                == fromAddress.filter { !$0.isClosed }.count
                    }
                }
                flood += fromAddress
            }
            try await eventually("the flood fills the node") { harness.api.connections.open == 30 }
            // The flood itself went beyond the cap: its last ones were refused.
            #expect(flood.filter(\.isClosed).count >= 1)
            let refusedBefore = Self.closings(harness, "too_many_connections")
            let refused = try await RawConnection.open(port: port, from: "127.0.0.5")
            try await eventually("a new connection beyond the total cap is refused") { refused.isClosed }
            #expect(refused.text.hasPrefix("HTTP/1.1 503"))
            // The connection that was open keeps being served.
            regular.send("GET /health/ready HTTP/1.1\r\nHost: node\r\n\r\n")
            try await eventually("the open connection still answers") {
                regular.text.components(separatedBy: "HTTP/1.1 200").count == 3
            }
            #expect(Self.closings(harness, "too_many_connections") == refusedBefore + 1)
            regular.close()
            for connection in flood { connection.close() }
        }
    }

    /// A malformed request, shown in results by its name (its bytes hold a NUL, which cut the
    /// line of a failure before its message in one CI log).
    struct Malformed: Sendable, CustomTestStringConvertible {
        let name: String
        let request: String
        var testDescription: String { name }
    }

    @Test(arguments: [
        Malformed(
            name: "conflicting lengths",
            request:
                "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        Malformed(name: "NUL in a header", request: "GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n"),
        Malformed(
            name: "100 KB request line",
            request: "GET /" + String(repeating: "a", count: 100_000) + " HTTP/1.1\r\nHost: x\r\n\r\n"),
        Malformed(
            name: "not HTTP", request: "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}\r\n\r\n"),
    ])
    func malformedHTTP_isAnswered400_andClosed(_ malformed: Malformed) async throws {
        let (name, request) = (malformed.name, malformed.request)
        try await GatewayHarness.run(live: true, connections: Self.limits) { client, harness in
            let connection = try await RawConnection.open(port: try #require(client.port), from: "127.0.0.1")
            connection.send(request)
            try await eventually("\(name): closed") { connection.isClosed }
            let answer = connection.text.prefix(80).replacingOccurrences(of: "\u{0}", with: "\\0")
            #expect(connection.text.hasPrefix("HTTP/1.1 400"), "\(name): \(answer)")
            #expect(connection.text.contains("malformed_http"), "\(name): \(answer)")
            #expect(Self.closings(harness, "malformed_http") == 1, "\(name): counted once")
        }
    }

    @Test func aBodyThatDoesNotArriveInTime_closesTheConnection() async throws {
        try await GatewayHarness.run(live: true, connections: Self.limits) { client, harness in
            let connection = try await RawConnection.open(port: try #require(client.port), from: "127.0.0.1")
            connection.send(
                "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            // The deadline is 1 s; the wait is long because a machine busy with the whole suite can be slow.
            try await eventually("closed after the body deadline") { connection.isClosed }
            #expect(Self.closings(harness, "request_body_timeout") == 1)
        }
    }

    @Test func keepAliveRequests_afterTheFirst_areNotCutByTheHeadDeadline() async throws {
        try await GatewayHarness.run(live: true, connections: Self.limits) { client, _ in
            let connection = try await RawConnection.open(port: try #require(client.port), from: "127.0.0.1")
            connection.send("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            try await eventually("first answer") { connection.text.hasPrefix("HTTP/1.1 200") }
            // Longer than the head deadline between requests: the keep-alive idle timer applies.
            try await Task.sleep(for: .milliseconds(1_500))
            #expect(!connection.isClosed)
            connection.send("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            try await eventually("second answer") { connection.text.components(separatedBy: "HTTP/1.1 200").count == 3 }
            connection.close()
        }
    }
}

/// A plain TCP connection from a chosen loopback address that records what it receives and
/// whether the server closed it.
final class RawConnection: Sendable {
    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let state = Mutex((bytes: [UInt8](), closed: false))

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLock { $0.bytes += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLock { $0.closed = true }
        }
    }

    private let channel: any Channel
    private let recorder: Recorder

    private init(channel: any Channel, recorder: Recorder) {
        self.channel = channel
        self.recorder = recorder
    }

    static func open(port: Int, from source: String) async throws -> RawConnection {
        let recorder = Recorder()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(recorder) }
            }
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, recorder: recorder)
    }

    func send(_ text: String) {
        channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
    }

    var text: String { String(decoding: recorder.state.withLock { $0.bytes }, as: UTF8.self) }
    var isClosed: Bool { recorder.state.withLock { $0.closed } }

    func close() {
        channel.close(promise: nil)
    }
}
