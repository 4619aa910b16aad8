import AuctionCore
import ClusterCore
import NIOCore
import NIOPosix
import Node
import TestSupport
import Testing

/// Peers that should not be let in: each is refused and counted, and the cluster keeps serving.
@Suite(.serialized) struct TransportRefusalTests {
    /// Connects a raw TCP client to `address`, writes `bytes`, and waits until the node closes it.
    static func sendRaw(_ bytes: [UInt8], to address: NodeAddress) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            // Read until the node closes the connection (it must).
            for try await _ in inbound {}
        }
    }

    static func frame(_ payload: [UInt8]) -> [UInt8] {
        var length = UInt32(payload.count).bigEndian
        return withUnsafeBytes(of: &length) { Array($0) } + payload
    }

    /// A hello of another protocol version, or with bad magic.
    static func hello(version: UInt16, magic: [UInt8] = ClusterHandshake.magic) -> [UInt8] {
        var payload: [UInt8] = [0xA1] + magic + [UInt8(version >> 8), UInt8(version & 0xff)]
        payload += Array(repeating: 7, count: 32)
        payload += [0, 1] + Array("x".utf8)
        return frame(payload)
    }

    /// Completes the handshake with the right secret, then sends an unknown frame.
    static func authenticatedGarbage(to address: NodeAddress, secret: ClusterSecret) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await channel.executeThenClose { inbound, outbound in
            var handshake = ClusterHandshake(
                role: .initiator, secret: secret, nonce: Array(repeating: 9, count: 32),
                node: NodeID(rawValue: "tester")!)
            func framed(_ buffer: ByteBuffer) -> ByteBuffer {
                ByteBuffer(bytes: Self.frame(Array(buffer.readableBytesView)))
            }
            try await outbound.write(framed(handshake.hello()))
            var pending = ByteBuffer()
            var established = false
            for try await chunk in inbound {
                pending.writeImmutableBuffer(chunk)
                while let length = pending.getInteger(at: pending.readerIndex, as: UInt32.self),
                    pending.readableBytes >= 4 + Int(length)
                {
                    pending.moveReaderIndex(forwardBy: 4)
                    let frame = pending.readSlice(length: Int(length))!
                    guard !established else { continue }
                    switch handshake.receive(frame) {
                    case .send(let reply):
                        try await outbound.write(framed(reply))
                    case .established:
                        established = true
                        try await outbound.write(ByteBuffer(bytes: Self.frame([0x7F, 1, 2, 3])))
                    case .fail(let failure, _):
                        throw failure
                    }
                }
            }
        }
    }

    @Test func badPeers_areRefusedAndCounted_andTheClusterKeepsServing() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 2, store: store)
            try await cluster.converged()
            let target = cluster.nodes[0]
            let metrics = target.transport.metrics

            // Garbage instead of a handshake.
            try await Self.sendRaw(Self.frame(Array("GET / HTTP/1.1\r\n".utf8)), to: target.address)
            // Another protocol version.
            try await Self.sendRaw(Self.hello(version: 99), to: target.address)
            // Not an ArtPay peer at all.
            try await Self.sendRaw(Self.hello(version: 1, magic: Array("HTTP".utf8)), to: target.address)
            try await eventually("three refused handshakes") { metrics.refusedHandshakes >= 3 }

            // A frame announcing more than the maximum length.
            try await Self.sendRaw([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3], to: target.address)
            try await eventually("an oversized frame") { metrics.oversizedFrames >= 1 }

            // A peer that knows the secret, then sends a frame this version does not know.
            try await Self.authenticatedGarbage(to: target.address, secret: cluster.secret)
            try await eventually("a malformed frame") { metrics.malformedFrames >= 1 }

            // A node with the wrong secret.
            let intruder = ClusterTransport(
                node: NodeID(rawValue: "intruder")!, secret: ClusterSecret("not the cluster secret at all")!,
                logger: .init(label: "intruder"))
            let message = MembershipMessage(
                sender: Member(
                    id: NodeID(rawValue: "intruder")!, generation: 1, address: NodeAddress(host: "127.0.0.1", port: 1)),
                kind: .sync([]))
            intruder.send(.membership(message), to: target.address)
            try await eventually("the intruder is refused") { metrics.refusedHandshakes >= 4 }
            intruder.shutdown()
            #expect(await target.node.members.allSatisfy { $0.id.rawValue != "intruder" })

            // Still serving: a command through the other node reaches its owner.
            let id = AuctionID(rawValue: "after-the-noise")!
            let now = SystemClockNow.now
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                startingPrice: Money(minorUnits: 500, currency: .usd),
                opensAt: now, closesAt: now.advanced(by: .seconds(600)))
            let created = await cluster.nodes[1].node.submit(.create(terms), to: id)
            #expect(created.value?.seq == 1)
            await cluster.stop()
        }
    }
}
