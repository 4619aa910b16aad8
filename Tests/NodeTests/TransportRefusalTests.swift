import AuctionCore
import ClusterCore
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Node
import Synchronization
import TestSupport
import Storage
import Testing

@Suite(.serialized) struct TransportRefusalTests {
    /// A raw TCP connection to `address`, over TLS with `tls`'s certificate when given.
    static func connect(
        to address: NodeAddress, tls: ClusterTLS?
    ) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        let context = try tls?.clientContext()
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Writes `bytes` to `address` (in clear, or over TLS) and waits until the node closes it.
    static func sendRaw(_ bytes: [UInt8], to address: NodeAddress, tls: ClusterTLS? = nil) async throws {
        let channel = try await connect(to: address, tls: tls)
        try? await channel.executeThenClose { inbound, outbound in
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

    /// Over TLS with `tls`'s certificate, runs the cluster handshake claiming to be `claimed`, then
    /// sends a frame this version does not know; returns when the node closes the connection.
    static func handshakeThenGarbage(
        to address: NodeAddress, secret: ClusterSecret, tls: ClusterTLS, claiming claimed: NodeID
    ) async throws {
        let channel = try await connect(to: address, tls: tls)
        try? await channel.executeThenClose { inbound, outbound in
            var handshake = ClusterHandshake(
                role: .initiator, secret: secret, nonce: Array(repeating: 9, count: 32), node: claimed)
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

    static func stillServing(_ cluster: LocalCluster, _ name: String) async {
        let id = AuctionID(rawValue: name)!
        let now = SystemClockNow.now
        let terms = AuctionTerms(
            auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
            startingPrice: Money(minorUnits: 500, currency: .usd),
            opensAt: now, closesAt: now.advanced(by: .seconds(600)))
        let created = await cluster.nodes[1].node.submit(.create(terms), to: id)
        #expect(created.value?.seq == 1, "\(created)")
    }

    @Test func badPeers_areRefusedAndCounted_andTheClusterKeepsServing() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 2, store: store)
            try await cluster.converged()
            let target = cluster.nodes[0]
            let metrics = target.transport.metrics
            let tester = TestCertificates.tls(for: NodeID(rawValue: "tester")!)

            // In clear: garbage, a hello, a huge length — refused at TLS.
            try await Self.sendRaw(Self.frame(Array("GET / HTTP/1.1\r\n".utf8)), to: target.address)
            try await Self.sendRaw(Self.hello(version: 1), to: target.address)
            try await Self.sendRaw([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3], to: target.address)
            try await eventually("three plaintext connections refused") { metrics.refusedTLS >= 3 }
            #expect(metrics.refusedHandshakes == 0)

            // Over TLS with a good certificate: another protocol version, not an ArtPay peer.
            try await Self.sendRaw(Self.hello(version: 99), to: target.address, tls: tester)
            try await Self.sendRaw(Self.hello(version: 1, magic: Array("HTTP".utf8)), to: target.address, tls: tester)
            try await eventually("two refused handshakes") { metrics.refusedHandshakes >= 2 }

            // A frame announcing more than the maximum length.
            try await Self.sendRaw([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3], to: target.address, tls: tester)
            try await eventually("an oversized frame") { metrics.oversizedFrames >= 1 }

            // A peer with a certificate and the secret, then a frame this version does not know.
            try await Self.handshakeThenGarbage(
                to: target.address, secret: cluster.secret, tls: tester, claiming: NodeID(rawValue: "tester")!)
            try await eventually("a malformed frame") { metrics.malformedFrames >= 1 }

            // A node with a good certificate but the wrong secret.
            let intruderID = NodeID(rawValue: "intruder")!
            let intruder = try ClusterTransport(
                node: intruderID, secret: ClusterSecret("not the cluster secret at all")!,
                tls: TestCertificates.tls(for: intruderID), logger: .init(label: "intruder"))
            let message = MembershipMessage(
                sender: Member(id: intruderID, generation: 1, address: NodeAddress(host: "127.0.0.1", port: 1)),
                kind: .sync([]))
            intruder.send(.membership(message), to: target.address)
            try await eventually("the intruder is refused") { metrics.refusedHandshakes >= 3 }
            intruder.shutdown()
            #expect(await target.node.members.allSatisfy { $0.id.rawValue != "intruder" })

            await Self.stillServing(cluster, "after-the-noise")
            await cluster.stop()
        }
    }

    /// Certificates that must not get in: another CA's, an expired one, and a good certificate of
    /// one node used to speak as another (a real member). Each is refused and counted; the
    /// membership does not change and the cluster keeps serving.
    @Test func certificatesThatDoNotProveTheClaimedNode_areRefused() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 2, store: store)
            try await cluster.converged()
            let target = cluster.nodes[0]
            let metrics = target.transport.metrics
            let hello = Self.hello(version: 1)

            let otherCA = try ClusterCertificates.createAuthority(name: "Someone else's CA")
            let foreign = try ClusterCertificates.issueNode(
                id: NodeID(rawValue: "foreign")!, hosts: ["127.0.0.1"], authority: otherCA)
            let foreignTLS = try ClusterTLS(
                authoritiesPEM: [TestCertificates.authority.certificatePEM], certificatePEM: foreign.certificatePEM,
                privateKeyPEM: foreign.privateKeyPEM)
            try await Self.sendRaw(hello, to: target.address, tls: foreignTLS)
            try await eventually("another CA's certificate is refused") { metrics.refusedTLS >= 1 }

            let expired = TestCertificates.tls(for: NodeID(rawValue: "expired")!, days: -1)
            try await Self.sendRaw(hello, to: target.address, tls: expired)
            try await eventually("an expired certificate is refused") { metrics.refusedTLS >= 2 }

            // A good certificate for "impostor", claiming to be node-2.
            let impostor = TestCertificates.tls(for: NodeID(rawValue: "impostor")!)
            try await Self.handshakeThenGarbage(
                to: target.address, secret: cluster.secret, tls: impostor, claiming: NodeID(rawValue: "node-2")!)
            try await eventually("the impostor is refused") { metrics.refusedIdentities >= 1 }
            #expect(metrics.malformedFrames == 0, "nothing after the handshake was read")

            let members = await target.node.members.map(\.id.rawValue).sorted()
            #expect(members == ["node-1", "node-2"])
            await Self.stillServing(cluster, "after-the-impostors")
            await cluster.stop()
        }
    }

    /// A peer that does not own an auction's shard cannot push its events: a forged bid pushed by
    /// another member is dropped and counted, and the owner's read model keeps the log's truth.
    @Test func eventsPushedByANonOwner_areDropped() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 2, store: store)
            try await cluster.converged()
            let owner = cluster.nodes[1]
            var id = AuctionID(rawValue: "pushed-0")!
            for index in 0..<200 where !(await owner.node.owns(id)) { id = AuctionID(rawValue: "pushed-\(index)")! }
            #expect(await owner.node.owns(id))
            let now = SystemClockNow.now
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                startingPrice: Money(minorUnits: 500, currency: .usd), opensAt: now, closesAt: now.advanced(by: .seconds(600)))
            #expect((try? await owner.node.submit(.create(terms), to: id).get())?.seq == 1)
            try await eventually("the owner's read model has the lot") { owner.node.readModel.summary(of: id) != nil }

            // The other member (its certificate, so its identity is proven) pushes a forged bid.
            let impostorID = NodeID(rawValue: "node-1")!
            let impostor = try ClusterTransport(
                node: impostorID, secret: cluster.secret, tls: TestCertificates.tls(for: impostorID),
                logger: .init(label: "impostor"))
            let forged = BidAccepted(
                bidId: BidID(rawValue: "forged")!, bidderId: UserID(rawValue: "mallory")!,
                maximum: Money(minorUnits: 99_999, currency: .usd), at: now, price: Money(minorUnits: 500, currency: .usd),
                leaderBidId: BidID(rawValue: "forged")!, leaderId: UserID(rawValue: "mallory")!)
            impostor.send(
                .events(auction: id, events: [StoredEvent(auction: id, seq: 2, epoch: Epoch(99), event: .bidAccepted(forged))]),
                to: owner.address)
            try await eventually("the push is dropped and counted") {
                await owner.node.metricsText().contains("artpay_cluster_events_not_from_owner_total 1")
            }
            #expect(owner.node.readModel.summary(of: id)?.leaderId == nil)
            #expect(owner.node.readModel.summary(of: id)?.seq == 1)
            impostor.shutdown()
            await cluster.stop()
        }
    }

    /// What crosses the cluster port is encrypted: a bid forwarded through a relay that records every
    /// byte shows neither its bid id nor its amount.
    @Test func clusterTraffic_showsNoBidInClear() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 1, store: store)
            try await cluster.converged()
            let target = cluster.nodes[0]
            let relay = try await RecordingRelay.start(to: target.address)

            let clientID = NodeID(rawValue: "spy-client")!
            let client = try ClusterTransport(
                node: clientID, secret: cluster.secret, tls: TestCertificates.tls(for: clientID),
                logger: .init(label: "client"))
            let answered = Mutex(0)
            client.onFrame { frame, _, _ in
                if case .response = frame { answered.withLock { $0 += 1 } }
            }
            let id = AuctionID(rawValue: "lot-in-clear")!
            let now = SystemClockNow.now
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                startingPrice: Money(minorUnits: 500, currency: .usd),
                opensAt: now, closesAt: now.advanced(by: .seconds(600)))
            client.send(.request(id: 1, hops: 1, auction: id, command: .create(terms), issuer: .node), to: relay.address)
            try await eventually("the create is answered") { answered.withLock { $0 } >= 1 }
            let bid = PlaceBid(
                bidId: BidID(rawValue: "bid-id-visible-in-clear")!, bidderId: UserID(rawValue: "alice")!,
                maximum: Money(minorUnits: 987_654_321, currency: .usd))
            client.send(.request(id: 2, hops: 1, auction: id, command: .placeBid(bid), issuer: .node), to: relay.address)
            try await eventually("the bid is answered") { answered.withLock { $0 } >= 2 }
            client.shutdown()

            let seen = relay.recorded
            #expect(seen.count > 500, "the relay saw the traffic (\(seen.count) bytes)")
            var amount = Int64(987_654_321).bigEndian
            let amountBytes = withUnsafeBytes(of: &amount) { Array($0) }
            for needle in [
                Array("bid-id-visible-in-clear".utf8), Array("lot-in-clear".utf8), Array("alice".utf8),
                Array("987654321".utf8), amountBytes,
            ] {
                #expect(!Self.contains(seen, needle), "\(String(decoding: needle, as: UTF8.self)) crossed in clear")
            }
            await relay.stop()
            await cluster.stop()
        }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }
}

/// A TCP relay on loopback that forwards one connection to `target` and records every byte in
/// both directions — what someone on the network path sees.
final class RecordingRelay: Sendable {
    let address: NodeAddress
    private let bytes = Mutex<[UInt8]>([])
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    var recorded: [UInt8] { bytes.withLock { $0 } }

    private init(address: NodeAddress) {
        self.address = address
    }

    static func start(to target: NodeAddress) async throws -> RecordingRelay {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let relay = RecordingRelay(address: NodeAddress(host: "127.0.0.1", port: server.channel.localAddress!.port!))
        let task = Task<Void, Never> {
            try? await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await inbound in connections {
                        group.addTask { try? await relay.pipe(inbound, to: target) }
                    }
                }
            }
        }
        relay.task.withLock { $0 = task }
        return relay
    }

    private func pipe(_ client: NIOAsyncChannel<ByteBuffer, ByteBuffer>, to target: NodeAddress) async throws {
        let upstream = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: target.host, port: target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await client.executeThenClose { clientIn, clientOut in
            try await upstream.executeThenClose { upIn, upOut in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await chunk in clientIn {
                            self.bytes.withLock { $0 += Array(chunk.readableBytesView) }
                            try await upOut.write(chunk)
                        }
                    }
                    group.addTask {
                        for try await chunk in upIn {
                            self.bytes.withLock { $0 += Array(chunk.readableBytesView) }
                            try await clientOut.write(chunk)
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    func stop() async {
        let task = self.task.withLock { $0 }
        task?.cancel()
    }
}
