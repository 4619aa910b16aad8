import PostgresNIO
import Storage

/// Counts ownership moves per fault round of a chaos run: the epoch of every shard lease is read
/// at the start of each round, and the difference to the next reading is what that round (its
/// fault, heal and calm) cost. A node cut off for a while should move its shards away once and
/// back once — two epochs — and the others' shards not at all; a minority that keeps taking shards
/// shows as many more.
actor ShardLeaseSampler {
    struct Round: Sendable {
        var label: String
        /// Shards whose epoch changed during the round.
        var shardsMoved: Int
        /// The most epoch changes of one shard during the round.
        var mostChangesOfOneShard: Int64
    }

    private let configuration: PostgresClient.Configuration
    private var current: (label: String, epochs: [Int32: Int64])?
    private(set) var rounds: [Round] = []

    init(configuration: PostgresClient.Configuration) {
        self.configuration = configuration
    }

    /// Closes the round that was running (if its first reading succeeded) and starts `label`'s
    /// (nil: none, the schedule is over).
    func startRound(_ label: String?) async {
        let epochs = await read()
        if let current, let epochs {
            var moved = 0
            var most: Int64 = 0
            // A shard first leased during the round is a first owner, not a move.
            for (shard, epoch) in epochs {
                guard let previous = current.epochs[shard] else { continue }
                let changes = epoch - previous
                if changes > 0 { moved += 1 }
                most = max(most, changes)
            }
            rounds.append(Round(label: current.label, shardsMoved: moved, mostChangesOfOneShard: most))
        }
        current = label.flatMap { label in epochs.map { (label, $0) } }
    }

    private func read() async -> [Int32: Int64]? {
        try? await withDeadline(.seconds(5)) { [configuration] in
            try await PostgresClient.withRunning(configuration) { client in
                var epochs: [Int32: Int64] = [:]
                for try await (shard, epoch) in try await client.query("SELECT shard, epoch FROM shard_leases")
                    .decode((Int32, Int64).self)
                {
                    epochs[shard] = epoch
                }
                return epochs
            }
        }
    }

    /// One line per round, and the worst round of each fault kind.
    static func summary(_ rounds: [Round]) -> String {
        guard !rounds.isEmpty else { return "shard moves per round: none measured" }
        var lines = ["shard moves per round (shards whose epoch changed; most changes of one shard):"]
        for (index, round) in rounds.enumerated() {
            lines.append(
                "    #\(index + 1) \(round.label): \(round.shardsMoved) shards, at most \(round.mostChangesOfOneShard)")
        }
        let byKind = Dictionary(grouping: rounds) { $0.label.split(separator: " ").first.map(String.init) ?? "" }
        lines.append(
            "    worst round of each kind: "
                + byKind.sorted { $0.key < $1.key }.map { kind, rounds in
                    "\(kind) \(rounds.map(\.mostChangesOfOneShard).max() ?? 0)"
                }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
