import AuctionCore

/// A small deterministic random generator (SplitMix64) for the pure protocol instances: the shell
/// seeds it, so a simulation with the same seed replays exactly.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        return StableHash.mix(state)
    }
}
