import Synchronization

/// Counters of the cluster transport: what was refused and why, for `/metrics` and the tests that
/// show bad peers are turned away.
public final class TransportMetrics: Sendable {
    private let refusedHandshakesCount = Atomic<Int>(0)
    private let malformedFramesCount = Atomic<Int>(0)
    private let oversizedFramesCount = Atomic<Int>(0)
    private let establishedConnectionsCount = Atomic<Int>(0)

    public init() {}

    /// Handshakes that failed: no or a wrong secret, another protocol version, not a cluster peer.
    public var refusedHandshakes: Int { refusedHandshakesCount.load(ordering: .relaxed) }
    /// Frames that did not decode after the handshake.
    public var malformedFrames: Int { malformedFramesCount.load(ordering: .relaxed) }
    /// Frames longer than the maximum.
    public var oversizedFrames: Int { oversizedFramesCount.load(ordering: .relaxed) }
    public var establishedConnections: Int { establishedConnectionsCount.load(ordering: .relaxed) }

    func refusedHandshake() { refusedHandshakesCount.add(1, ordering: .relaxed) }
    func malformedFrame() { malformedFramesCount.add(1, ordering: .relaxed) }
    func oversizedFrame() { oversizedFramesCount.add(1, ordering: .relaxed) }
    func established() { establishedConnectionsCount.add(1, ordering: .relaxed) }
}
