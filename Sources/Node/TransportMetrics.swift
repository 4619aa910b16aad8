import Synchronization

/// Counters of the cluster transport: what was refused and why, for `/metrics` and the tests that
/// show bad peers are turned away.
public final class TransportMetrics: Sendable {
    private let refusedHandshakesCount = Atomic<Int>(0)
    private let malformedFramesCount = Atomic<Int>(0)
    private let oversizedFramesCount = Atomic<Int>(0)
    private let establishedConnectionsCount = Atomic<Int>(0)
    private let refusedTLSCount = Atomic<Int>(0)
    private let refusedIdentitiesCount = Atomic<Int>(0)

    public init() {}

    /// Handshakes that failed: no or a wrong secret, another protocol version, not a cluster peer.
    public var refusedHandshakes: Int { refusedHandshakesCount.load(ordering: .relaxed) }
    /// Frames that did not decode after the handshake.
    public var malformedFrames: Int { malformedFramesCount.load(ordering: .relaxed) }
    /// Frames longer than the maximum.
    public var oversizedFrames: Int { oversizedFramesCount.load(ordering: .relaxed) }
    public var establishedConnections: Int { establishedConnectionsCount.load(ordering: .relaxed) }
    /// Connections whose TLS handshake failed: plaintext, a certificate from an untrusted CA, an
    /// expired one, no certificate, or no handshake within the deadline.
    public var refusedTLS: Int { refusedTLSCount.load(ordering: .relaxed) }
    /// Peers whose certificate names another node than the one they claimed to be.
    public var refusedIdentities: Int { refusedIdentitiesCount.load(ordering: .relaxed) }

    func refusedHandshake() { refusedHandshakesCount.add(1, ordering: .relaxed) }
    func malformedFrame() { malformedFramesCount.add(1, ordering: .relaxed) }
    func oversizedFrame() { oversizedFramesCount.add(1, ordering: .relaxed) }
    func established() { establishedConnectionsCount.add(1, ordering: .relaxed) }
    func refusedTLSHandshake() { refusedTLSCount.add(1, ordering: .relaxed) }
    func refusedIdentity() { refusedIdentitiesCount.add(1, ordering: .relaxed) }
}
