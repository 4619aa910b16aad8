public import AuctionCore
import Crypto
public import NIOCore

/// The opening of every cluster connection, as a pure state machine: both sides show they know
/// the cluster secret without sending it, and agree on the protocol version.
///
/// Each side first sends `hello` (magic `ARTP`, protocol version, a fresh 32-byte nonce, its node
/// id); on the peer's hello it sends its proof, `HMAC-SHA256(secret, role ‖ initiator nonce ‖
/// acceptor nonce)`, with `role` "initiator" or "acceptor" so a proof can never be reflected back.
/// The connection carries cluster messages only once both proofs verified. Anything else — bad
/// magic, another version, a wrong proof, a malformed frame — ends it with a `refusal` frame
/// naming the reason (so the other side can log it clearly) and a typed failure.
public struct ClusterHandshake: Sendable {
    public static let magic: [UInt8] = Array("ARTP".utf8)
    public static let protocolVersion: UInt16 = 1
    public static let nonceLength = 32

    public enum Role: Sendable {
        case initiator
        case acceptor
    }

    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        case badMagic
        case unsupportedVersion(peer: UInt16)
        case badProof
        case unexpectedFrame
        case malformed(WireError)
        case refusedByPeer(String)

        public var description: String {
            switch self {
            case .badMagic: "not an ArtPay cluster peer (bad magic)"
            case .unsupportedVersion(let peer):
                "peer speaks cluster protocol \(peer), this node speaks \(ClusterHandshake.protocolVersion)"
            case .badProof: "peer does not know the cluster secret"
            case .unexpectedFrame: "unexpected frame during the handshake"
            case .malformed(let error): "malformed handshake frame: \(error)"
            case .refusedByPeer(let reason): "refused by peer: \(reason)"
            }
        }
    }

    /// What the shell does next.
    public enum Action: Sendable {
        /// Send this frame and wait for the next one.
        case send(ByteBuffer)
        /// The connection is now authenticated with `peer`.
        case established(peer: NodeID)
        /// Send the refusal frame and close.
        case fail(Failure, refusal: ByteBuffer?)
    }

    private enum State: Sendable {
        case awaitingHello
        case awaitingProof(peerNonce: [UInt8], peer: NodeID)
        case established(NodeID)
        case failed
    }

    private let role: Role
    private let secret: ClusterSecret
    private let nonce: [UInt8]
    private let node: NodeID
    private var state = State.awaitingHello

    /// - Parameter nonce: 32 fresh random bytes from the shell.
    public init(role: Role, secret: ClusterSecret, nonce: [UInt8], node: NodeID) {
        precondition(nonce.count == Self.nonceLength, "the handshake nonce must be 32 bytes")
        self.role = role
        self.secret = secret
        self.nonce = nonce
        self.node = node
    }

    /// The hello frame to send first.
    public func hello() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(FrameTag.hello.rawValue)
        buffer.writeBytes(Self.magic)
        buffer.writeInteger(Self.protocolVersion)
        buffer.writeBytes(nonce)
        MembershipCodec.writeNodeID(node, to: &buffer)
        return buffer
    }

    public mutating func receive(_ frame: ByteBuffer) -> Action {
        var frame = frame
        do throws(WireError) {
            let tag = try frame.readWire(UInt8.self)
            switch (FrameTag(rawValue: tag), state) {
            case (.refusal, _):
                let reason = (try? frame.readWireString(maximumBytes: 1_024)) ?? "?"
                return fail(.refusedByPeer(reason), tell: false)
            case (.hello, .awaitingHello):
                guard frame.readBytes(length: Self.magic.count) == Self.magic else { return fail(.badMagic) }
                let version: UInt16 = try frame.readWire()
                guard version == Self.protocolVersion else { return fail(.unsupportedVersion(peer: version)) }
                guard let peerNonce = frame.readBytes(length: Self.nonceLength) else { throw .truncated }
                let peer = try MembershipCodec.readNodeID(from: &frame)
                try frame.expectFullyRead()
                state = .awaitingProof(peerNonce: peerNonce, peer: peer)
                var proof = ByteBuffer()
                proof.writeInteger(FrameTag.proof.rawValue)
                proof.writeBytes(mac(role: role, peerNonce: peerNonce))
                return .send(proof)
            case (.proof, .awaitingProof(let peerNonce, let peer)):
                guard let received = frame.readBytes(length: 32) else { throw .truncated }
                try frame.expectFullyRead()
                let peerRole: Role = role == .initiator ? .acceptor : .initiator
                let expected = mac(role: peerRole, peerNonce: peerNonce)
                // Constant-time comparison of the two MACs.
                guard received.count == expected.count, zip(received, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0
                else { return fail(.badProof) }
                state = .established(peer)
                return .established(peer: peer)
            default:
                return fail(.unexpectedFrame)
            }
        } catch {
            return fail(.malformed(error))
        }
    }

    private mutating func fail(_ failure: Failure, tell: Bool = true) -> Action {
        state = .failed
        guard tell else { return .fail(failure, refusal: nil) }
        var refusal = ByteBuffer()
        refusal.writeInteger(FrameTag.refusal.rawValue)
        refusal.writeWireString(failure.description)
        return .fail(failure, refusal: refusal)
    }

    /// HMAC over the role label and both nonces, initiator's first.
    private func mac(role: Role, peerNonce: [UInt8]) -> [UInt8] {
        let (initiatorNonce, acceptorNonce) = self.role == .initiator ? (nonce, peerNonce) : (peerNonce, nonce)
        var authenticator = HMAC<SHA256>(key: SymmetricKey(data: secret.bytes))
        authenticator.update(data: Array((role == .initiator ? "initiator" : "acceptor").utf8))
        authenticator.update(data: initiatorNonce)
        authenticator.update(data: acceptorNonce)
        return Array(authenticator.finalize())
    }

    /// The tags of handshake frames; cluster message frames use other tags (see `ClusterFrame`).
    enum FrameTag: UInt8 {
        case hello = 0xA1
        case proof = 0xA2
        case refusal = 0xA3
    }
}

/// The shared secret every node of a cluster is configured with. Never logged, never sent.
public struct ClusterSecret: Sendable, CustomStringConvertible {
    public static let minimumLength = 16
    let bytes: [UInt8]

    /// The secret, or nil when it is shorter than `minimumLength` bytes.
    public init?(_ text: String) {
        guard text.utf8.count >= Self.minimumLength else { return nil }
        bytes = Array(text.utf8)
    }

    public var description: String { "<cluster secret>" }
}
