import AuctionCore
import ClusterCore
import NIOCore
import PropertyBased
import TestSupport
import Testing

@Suite struct MembershipCodecTests {
    static let member = zip(
        Gen.int(in: 1...40), Gen.uint64(in: 0...UInt64.max), Gen.int(in: 0...65_535), Gen.int(in: 0...7),
        zip(Gen.uint64(in: 0...1_000), Gen.int(in: 0...3), Gen.bool)
    ).map { n, generation, port, roleBits, rest in
        let status = MemberStatus(rawValue: UInt8(rest.1))!
        return Member(
            id: NodeID(rawValue: "node-\(n)")!, generation: generation,
            address: NodeAddress(host: "10.1.2.\(n)", port: port),
            roles: Set(NodeRole.allCases.enumerated().filter { roleBits & (1 << $0.offset) != 0 }.map(\.element)),
            incarnation: rest.0, status: status, suspectedBy: rest.2 ? NodeID(rawValue: "node-0")! : nil)
    }

    static let message = zip(member, Gen.int(in: 0...6), member.array(of: 0...20), Gen.uint64(in: 0...UInt64.max)).map {
        sender, kind, members, sequence -> MembershipMessage in
        let kinds: [MembershipMessage.Kind] = [
            .ping(sequence: sequence), .ack(sequence: sequence),
            .pingRequest(sequence: sequence, target: members.first ?? sender),
            .sync(members), .syncReply(members), .alive, .leave,
        ]
        return MembershipMessage(sender: sender, kind: kinds[kind], gossip: Array(members.prefix(8)))
    }

    @Test func roundTrip_givesBackTheSameMessage() async {
        await offThePool {
            await propertyCheck(count: 500, input: Self.message) { message in
                var buffer = ByteBuffer()
                MembershipCodec.write(message, to: &buffer)
                let decoded = try MembershipCodec.read(from: &buffer)
                #expect(decoded == message)
                #expect(buffer.readableBytes == 0)
            }
        }
    }

    @Test func everyTruncation_isRefusedWithoutCrashing() throws {
        var buffer = ByteBuffer()
        MembershipCodec.write(
            MembershipMessage(
                sender: Member(id: NodeID(rawValue: "a")!, generation: 1, address: NodeAddress(host: "h", port: 1)),
                kind: .sync([])),
            to: &buffer)
        for length in 0..<buffer.readableBytes {
            var prefix = buffer.getSlice(at: 0, length: length)!
            #expect(throws: WireError.self) { _ = try MembershipCodec.read(from: &prefix) }
        }
    }

    @Test func randomBytes_neverCrashTheDecoder() async {
        await offThePool {
            await propertyCheck(count: 2_000, input: Gen.uint8(in: 0...255).array(of: 0...300)) { bytes in
                var buffer = ByteBuffer(bytes: bytes)
                _ = try? MembershipCodec.read(from: &buffer)
            }
        }
    }
}

@Suite struct ClusterHandshakeTests {
    static let secret = ClusterSecret("correct horse battery staple")!
    static func nonce(_ byte: UInt8) -> [UInt8] { Array(repeating: byte, count: 32) }

    /// Runs both sides against each other; returns what each ended with.
    static func handshake(
        initiatorSecret: ClusterSecret = secret, acceptorSecret: ClusterSecret = secret
    ) -> (ClusterHandshake.Action?, ClusterHandshake.Action?) {
        var initiator = ClusterHandshake(
            role: .initiator, secret: initiatorSecret, nonce: nonce(1), node: NodeID(rawValue: "a")!)
        var acceptor = ClusterHandshake(
            role: .acceptor, secret: acceptorSecret, nonce: nonce(2), node: NodeID(rawValue: "b")!)
        guard case .send(let initiatorProof) = initiator.receive(acceptor.hello()),
            case .send(let acceptorProof) = acceptor.receive(initiator.hello())
        else { return (nil, nil) }
        return (initiator.receive(acceptorProof), acceptor.receive(initiatorProof))
    }

    @Test func sameSecret_establishesBothSides() {
        let (initiator, acceptor) = Self.handshake()
        guard case .established(let peerOfInitiator) = initiator, case .established(let peerOfAcceptor) = acceptor
        else {
            Issue.record("\(String(describing: initiator)) / \(String(describing: acceptor))")
            return
        }
        #expect(peerOfInitiator == NodeID(rawValue: "b")!)
        #expect(peerOfAcceptor == NodeID(rawValue: "a")!)
    }

    @Test func wrongSecret_isRefusedByBothSides() {
        let (initiator, acceptor) = Self.handshake(acceptorSecret: ClusterSecret("another secret of some length")!)
        guard case .fail(.badProof, let refusal) = initiator, refusal != nil, case .fail(.badProof, _) = acceptor else {
            Issue.record("\(String(describing: initiator)) / \(String(describing: acceptor))")
            return
        }
    }

    @Test func otherVersion_garbageAndReflectedProofs_areRefused() {
        var acceptor = ClusterHandshake(
            role: .acceptor, secret: Self.secret, nonce: Self.nonce(2), node: NodeID(rawValue: "b")!)
        var hello = ClusterHandshake(
            role: .initiator, secret: Self.secret, nonce: Self.nonce(1), node: NodeID(rawValue: "a")!
        ).hello()
        hello.setInteger(UInt16(99), at: 5)
        guard case .fail(.unsupportedVersion(peer: 99), let refusal?) = acceptor.receive(hello) else {
            Issue.record("version")
            return
        }
        var text = refusal
        _ = text.readInteger(as: UInt8.self)
        let reason = try? text.readWireString(maximumBytes: 1_000)
        #expect(reason?.contains("99") == true)

        var other = ClusterHandshake(
            role: .acceptor, secret: Self.secret, nonce: Self.nonce(2), node: NodeID(rawValue: "b")!)
        guard case .fail(.badMagic, _) = other.receive(ByteBuffer(bytes: [0xA1, 1, 2])) else {
            Issue.record("garbage")
            return
        }
        var third = ClusterHandshake(
            role: .acceptor, secret: Self.secret, nonce: Self.nonce(2), node: NodeID(rawValue: "b")!)
        guard case .fail(.malformed, _) = third.receive(ByteBuffer(bytes: [0xA1] + ClusterHandshake.magic + [0, 1, 7]))
        else {
            Issue.record("truncated hello")
            return
        }

        // An attacker without the secret replays the acceptor's own proof back to it.
        var victim = ClusterHandshake(
            role: .acceptor, secret: Self.secret, nonce: Self.nonce(2), node: NodeID(rawValue: "b")!)
        let attackerHello = ClusterHandshake(
            role: .initiator, secret: ClusterSecret("attacker does not know it")!, nonce: Self.nonce(3),
            node: NodeID(rawValue: "x")!
        ).hello()
        guard case .send(let victimProof) = victim.receive(attackerHello) else {
            Issue.record("hello")
            return
        }
        guard case .fail(.badProof, _) = victim.receive(victimProof) else {
            Issue.record("reflection accepted")
            return
        }
    }
}
