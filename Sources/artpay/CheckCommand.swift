import ArgumentParser
import AuctionCore
import ChaosCheck
import Foundation
import PostgresNIO
import Storage

/// `artpay check <history>`: the chaos checker. Reads a run's history (JSON Lines) and the final
/// log of every auction in it from the store, prints the summary, exits 1 on any violation.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a chaos run's history against the final logs: nothing acknowledged lost, one order, one close."
    )

    @Argument(help: "The history file (JSON Lines) the chaos runner wrote.") var history: String
    @OptionGroup var postgres: PostgresOptions
    @Option(help: "Read the logs from this SQLite file instead of PostgreSQL.") var sqlite: String?
    @Option(help: "Read the logs from this dump (the logs.jsonl a chaos run writes) instead of a store.") var logs:
        String?

    func run() async throws {
        let entries = try Self.read(history)
        let auctions = Self.auctions(in: entries)
        let logs: [AuctionID: [StoredEvent]]
        if let dump = self.logs {
            logs = try Self.readDump(dump)
        } else if let sqlite {
            let store = try await SQLiteEventStore.open(path: sqlite)
            logs = try await Self.logs(of: auctions, from: store)
            await store.close()
        } else {
            logs = try await PostgresClient.withRunning(postgres.configuration(maximumConnections: 4)) { client in
                try await Self.logs(of: auctions, from: PostgresEventStore(client: client))
            }
        }
        let report = HistoryChecker.check(history: entries, logs: logs)
        print(report.summary)
        // What the faults cost, from the history alone (the run's liveness bounds, reported here).
        let impact = FaultImpact.measure(history: entries)
        print(impact.summary)
        for line in impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2) { print("LIVENESS: \(line)") }
        if !report.passed { throw ExitCode(1) }
    }

    static func read(_ path: String) throws -> [HistoryEntry] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let decoder = JSONDecoder()
        var entries: [HistoryEntry] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            do {
                entries.append(try decoder.decode(HistoryEntry.self, from: Data(line.utf8)))
            } catch {
                throw ValidationError("\(path):\(number + 1): not a history line (\(error))")
            }
        }
        return entries
    }

    static func auctions(in entries: [HistoryEntry]) -> Set<AuctionID> {
        var auctions: Set<AuctionID> = []
        for entry in entries {
            switch entry {
            case .operation(let operation): auctions.insert(operation.auction)
            case .watched(let event): auctions.insert(event.auction)
            case .auction(let auction): auctions.insert(auction.auction)
            case .fault: break
            }
        }
        return auctions
    }

    static func logs(of auctions: Set<AuctionID>, from store: some EventStore) async throws -> [AuctionID:
        [StoredEvent]]
    {
        var logs: [AuctionID: [StoredEvent]] = [:]
        for auction in auctions {
            var log: [StoredEvent] = []
            while true {
                let page = try await store.events(of: auction, after: log.last?.seq ?? 0, limit: 1_000)
                log += page
                if page.count < 1_000 { break }
            }
            logs[auction] = log
        }
        return logs
    }

    /// One logged event in a dump file: the store's own encoding of it.
    struct DumpedEvent: Codable {
        var auction: String
        var seq: Int64
        var epoch: Int64
        var kind: String
        var payload: String
    }

    /// Writes `logs` as JSON Lines, so a run can be checked again after its database is gone.
    static func writeDump(_ logs: [AuctionID: [StoredEvent]], to path: String) throws {
        let encoder = JSONEncoder()
        var text = Data()
        for (_, log) in logs.sorted(by: { $0.key < $1.key }) {
            for event in log {
                let (kind, payload) = EventCodec.encode(event.event)
                text += try encoder.encode(
                    DumpedEvent(
                        auction: event.auction.rawValue, seq: event.seq, epoch: event.epoch.rawValue, kind: kind,
                        payload: payload))
                text.append(0x0A)
            }
        }
        try text.write(to: URL(fileURLWithPath: path))
    }

    static func readDump(_ path: String) throws -> [AuctionID: [StoredEvent]] {
        let decoder = JSONDecoder()
        var logs: [AuctionID: [StoredEvent]] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let dumped = try decoder.decode(DumpedEvent.self, from: Data(line.utf8))
            guard let auction = AuctionID(rawValue: dumped.auction) else {
                throw ValidationError("bad auction id in \(path)")
            }
            let event = try EventCodec.decode(
                kind: dumped.kind, payload: dumped.payload, auction: auction, seq: dumped.seq)
            logs[auction, default: []].append(
                StoredEvent(auction: auction, seq: dumped.seq, epoch: Epoch(dumped.epoch), event: event))
        }
        return logs
    }
}
