public import AuctionCore

/// Checks a chaos run: what clients were told against the final durable log. Pure: it gets the
/// history and the logs and returns a report.
///
/// The six checks (issue #5): 1. every acknowledged bid is logged, and nothing never attempted is;
/// 2. each log is well formed (ids once, seq 1…n, price never down and up on every change of
/// leader, epochs never down); 3. real time: a bid acknowledged before another was first sent has
/// the smaller seq; 4. every state a client was shown is the log's state at that seq, and every
/// event a watcher got is the log's event at that seq; 5. one close at most, nothing accepted after
/// it, the right result; 6. each watcher saw each auction's events in order, without gap or repeat.
public enum HistoryChecker {
    public static func check(history: [HistoryEntry], logs: [AuctionID: [StoredEvent]]) -> CheckReport {
        var report = CheckReport()
        var operations: [HistoryOperation] = []
        var watched: [WatchedEvent] = []
        var auctions: Set<AuctionID> = []
        for entry in history {
            switch entry {
            case .operation(let operation):
                operations.append(operation)
                auctions.insert(operation.auction)
                report.outcomes[operation.outcome.rawValue, default: 0] += 1
            case .watched(let event):
                watched.append(event)
                auctions.insert(event.auction)
            case .fault(let fault):
                report.faults[fault.kind, default: 0] += 1
            case .auction(let auction):
                auctions.insert(auction.auction)
            }
        }
        report.operations = operations.count
        report.watchedEvents = watched.count
        report.auctions = auctions.count
        let operationsByAuction = Dictionary(grouping: operations, by: \.auction)
        let watchedByAuction = Dictionary(grouping: watched, by: \.auction)
        for auction in auctions.sorted() {
            let log = (logs[auction] ?? []).sorted { $0.seq < $1.seq }
            report.loggedEvents += log.count
            let replay = Replay(auction: auction, log: log)
            let attempts = operationsByAuction[auction] ?? []
            report.add(wellFormed(auction, log, replay))
            report.add(acknowledgedAreLogged(auction, attempts, replay))
            report.add(realTimeOrder(auction, attempts, replay))
            report.add(shownStatesArePrefixes(auction, attempts, watchedByAuction[auction] ?? [], replay))
            report.add(closes(auction, log, replay))
        }
        report.add(watchersSawEverythingOnce(watched))
        return report
    }

    // MARK: - 2. Well-formed logs

    static func wellFormed(_ auction: AuctionID, _ log: [StoredEvent], _ replay: Replay) -> [Violation] {
        var found: [Violation] = []
        for (index, event) in log.enumerated() where event.seq != Int64(index + 1) {
            found.append(Violation(.seqGap, auction, "position \(index + 1) holds seq \(event.seq)"))
            break
        }
        var seen: Set<BidID> = []
        var previous: (price: Money, leader: UserID)?
        for (index, event) in log.enumerated() {
            if index > 0, event.epoch < log[index - 1].epoch {
                found.append(
                    Violation(
                        .epochDecreased, auction,
                        "seq \(event.seq) written under epoch \(event.epoch.rawValue) after epoch \(log[index - 1].epoch.rawValue)"
                    ))
            }
            if let bid = event.event.acceptedBidId {
                if !seen.insert(bid).inserted {
                    found.append(Violation(.duplicateBidId, auction, "bid \(bid) at seq \(event.seq) again"))
                }
            }
            if case .bidAccepted(let bid) = event.event {
                if let previous {
                    // A corrupt log is reported, never a trap in `Money`'s comparison of two currencies.
                    if bid.price.currency != previous.price.currency {
                        found.append(
                            Violation(
                                .currencyChanged, auction,
                                "seq \(event.seq): \(bid.price) after \(previous.price)"))
                    } else if bid.price < previous.price {
                        found.append(
                            Violation(
                                .priceDecreased, auction, "seq \(event.seq): \(bid.price) after \(previous.price)"))
                    } else if bid.leaderId != previous.leader, !(bid.price > previous.price) {
                        found.append(
                            Violation(
                                .leaderChangeWithoutPriceRise, auction,
                                "seq \(event.seq): \(bid.leaderId) leads at \(bid.price), unchanged"))
                    }
                }
                previous = (bid.price, bid.leaderId)
            }
        }
        if let failure = replay.failure { found.append(Violation(.invalidLog, auction, failure)) }
        return found
    }

    // MARK: - 1. Acknowledged bids are logged; logged bids were attempted

    static func acknowledgedAreLogged(_ auction: AuctionID, _ attempts: [HistoryOperation], _ replay: Replay)
        -> [Violation]
    {
        var found: [Violation] = []
        let byBid = Dictionary(grouping: attempts, by: \.bidId)
        for (bid, tries) in byBid.sorted(by: { $0.key < $1.key }) {
            let logged = replay.seqOfBid[bid]
            let acknowledged = tries.filter { $0.outcome == .ok }
            if !acknowledged.isEmpty, logged == nil {
                found.append(
                    Violation(
                        .lostAcknowledgedBid, auction,
                        "bid \(bid) acknowledged (seq \(acknowledged[0].seq ?? -1)) but not in the log"))
            }
            for ack in acknowledged where logged != nil && ack.seq != logged {
                found.append(
                    Violation(
                        .acknowledgedSeqMismatch, auction,
                        "bid \(bid) acknowledged at seq \(ack.seq ?? -1), logged at \(logged!)"))
            }
            // Refused for good, never possibly accepted by another attempt: it must not be there.
            if logged != nil, acknowledged.isEmpty, !tries.contains(where: { $0.outcome == .unknown }),
                let refusal = tries.first(where: { $0.outcome == .rejected || $0.outcome == .failed })
            {
                found.append(
                    Violation(
                        .refusedBidInLog, auction,
                        "bid \(bid) refused (\(refusal.code ?? refusal.outcome.rawValue)) but logged at seq \(logged!)")
                )
            }
        }
        for (bid, seq) in replay.seqOfBid.sorted(by: { $0.value < $1.value }) where byBid[bid] == nil {
            found.append(Violation(.unattemptedBidInLog, auction, "bid \(bid) at seq \(seq) was never sent"))
        }
        return found
    }

    // MARK: - 3. Real-time order

    static func realTimeOrder(_ auction: AuctionID, _ attempts: [HistoryOperation], _ replay: Replay) -> [Violation] {
        // Per bid id: first sent, first acknowledged, and its seq in the log.
        struct Bid {
            var id: BidID
            var firstSent: Int64
            var acknowledged: Int64?
            var seq: Int64
        }
        var bids: [BidID: Bid] = [:]
        for attempt in attempts {
            guard let seq = replay.seqOfBid[attempt.bidId] else { continue }
            var bid =
                bids[attempt.bidId] ?? Bid(id: attempt.bidId, firstSent: attempt.invokedAt, acknowledged: nil, seq: seq)
            bid.firstSent = min(bid.firstSent, attempt.invokedAt)
            if attempt.outcome == .ok { bid.acknowledged = min(bid.acknowledged ?? .max, attempt.completedAt) }
            bids[attempt.bidId] = bid
        }
        let acknowledged = bids.values.filter { $0.acknowledged != nil }.sorted { $0.acknowledged! < $1.acknowledged! }
        var found: [Violation] = []
        var index = 0
        var latest: Bid?
        for later in bids.values.sorted(by: { $0.firstSent < $1.firstSent }) {
            while index < acknowledged.count, acknowledged[index].acknowledged! < later.firstSent {
                if latest == nil || acknowledged[index].seq > latest!.seq { latest = acknowledged[index] }
                index += 1
            }
            if let earlier = latest, earlier.seq >= later.seq {
                found.append(
                    Violation(
                        .realTimeOrder, auction,
                        "bid \(earlier.id) was acknowledged (seq \(earlier.seq)) before bid \(later.id) was sent, which has seq \(later.seq)"
                    ))
            }
        }
        return found
    }

    // MARK: - 4. Shown states and watched events are the log's

    static func shownStatesArePrefixes(
        _ auction: AuctionID, _ attempts: [HistoryOperation], _ watched: [WatchedEvent], _ replay: Replay
    ) -> [Violation] {
        var found: [Violation] = []
        for attempt in attempts {
            guard let shown = attempt.shown else { continue }
            guard let state = replay.states[shown.seq] else {
                found.append(
                    Violation(
                        .divergentState, auction,
                        "bid \(attempt.bidId) was shown seq \(shown.seq), past the end of the log"))
                continue
            }
            let logged = ShownState(
                seq: state.seq, price: state.price, leaderId: state.leaderId, bidCount: state.bidCount,
                shownTo: attempt.bidder)
            if logged != shown {
                found.append(
                    Violation(
                        .divergentState, auction, "bid \(attempt.bidId) was shown \(shown), the log has \(logged)"))
            }
        }
        for event in watched {
            guard event.seq >= 1, Int(event.seq) <= replay.log.count else {
                found.append(
                    Violation(
                        .divergentWatchedEvent, auction,
                        "watcher \(event.watcher) got seq \(event.seq), past the end of the log"))
                continue
            }
            let logged = replay.log[Int(event.seq) - 1]
            if logged.event.kind.streamName != event.type || logged.event.acceptedBidId != event.bidId {
                found.append(
                    Violation(
                        .divergentWatchedEvent, auction,
                        "watcher \(event.watcher) got \(event.type) \(event.bidId.map { "\($0)" } ?? "") at seq \(event.seq); the log has \(logged.event.kind.streamName) \(logged.event.acceptedBidId.map { "\($0)" } ?? "")"
                    ))
            }
        }
        return found
    }

    // MARK: - 5. Closes

    static func closes(_ auction: AuctionID, _ log: [StoredEvent], _ replay: Replay) -> [Violation] {
        var found: [Violation] = []
        let ends = log.filter {
            if case .closed = $0.event { true } else if case .cancelled = $0.event { true } else { false }
        }
        if ends.count > 1 {
            found.append(
                Violation(
                    .closeViolation, auction, "\(ends.count) ends (closed or cancelled) at seqs \(ends.map(\.seq))"))
        }
        if let end = ends.first {
            for event in log where event.seq > end.seq && event.event.acceptedBidId != nil {
                found.append(
                    Violation(
                        .closeViolation, auction, "a bid accepted at seq \(event.seq) after the end at seq \(end.seq)"))
            }
        }
        for (seq, result, expected) in replay.closes where result != expected {
            found.append(
                Violation(
                    .closeViolation, auction, "closed at seq \(seq) as \(result); the log before it says \(expected)"))
        }
        return found
    }

    // MARK: - 6. Watchers

    static func watchersSawEverythingOnce(_ watched: [WatchedEvent]) -> [Violation] {
        var found: [Violation] = []
        var last: [String: Int64] = [:]
        for event in watched {
            let key = "\(event.watcher)/\(event.auction)"
            if let previous = last[key] {
                if event.seq <= previous {
                    found.append(
                        Violation(
                            .watcherRepeatOrReorder, event.auction,
                            "watcher \(event.watcher) got seq \(event.seq) after \(previous)"))
                    continue
                } else if event.seq != previous + 1 {
                    found.append(
                        Violation(
                            .watcherGap, event.auction,
                            "watcher \(event.watcher) got seq \(event.seq) after \(previous)"))
                }
            }
            last[key] = event.seq
        }
        return found
    }
}

/// The log replayed with the auction rules: the visible state after every seq, where each bid is,
/// and each close with the result the state before it implies.
struct Replay {
    let log: [StoredEvent]
    var states: [Int64: (seq: Int64, price: Int64, leaderId: UserID?, bidCount: Int)] = [:]
    var seqOfBid: [BidID: Int64] = [:]
    var closes: [(seq: Int64, result: AuctionResult, expected: AuctionResult)] = []
    /// Why the rules refused an event (replay stops there).
    var failure: String?

    init(auction: AuctionID, log: [StoredEvent]) {
        self.log = log
        var replayed = Auction(id: auction)
        for stored in log {
            if let bid = stored.event.acceptedBidId, seqOfBid[bid] == nil { seqOfBid[bid] = stored.seq }
            guard failure == nil else { continue }
            if case .closed(let closed) = stored.event, let state = replayed.state {
                let expected: AuctionResult =
                    if let leader = state.leader {
                        state.reserveMet
                            ? .sold(winnerId: leader.bidderId, bidId: leader.bidId, price: state.price)
                            : .unsold(.reserveNotMet)
                    } else {
                        .unsold(.noBids)
                    }
                closes.append((stored.seq, closed.result, expected))
            }
            do {
                try replayed.apply(stored.event)
            } catch {
                failure = "seq \(stored.seq): \(error.reason)"
                continue
            }
            if let state = replayed.state, replayed.seq == stored.seq {
                states[stored.seq] = (stored.seq, state.price.minorUnits, state.leader?.bidderId, state.bidCount)
            }
        }
    }
}

/// One thing the checker found wrong.
public struct Violation: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case lostAcknowledgedBid = "lost_acknowledged_bid"
        case acknowledgedSeqMismatch = "acknowledged_seq_mismatch"
        case refusedBidInLog = "refused_bid_in_log"
        case unattemptedBidInLog = "unattempted_bid_in_log"
        case seqGap = "seq_gap"
        case duplicateBidId = "duplicate_bid_id"
        case priceDecreased = "price_decreased"
        case leaderChangeWithoutPriceRise = "leader_change_without_price_rise"
        case currencyChanged = "currency_changed"
        case epochDecreased = "epoch_decreased"
        case invalidLog = "invalid_log"
        case realTimeOrder = "real_time_order"
        case divergentState = "divergent_state"
        case divergentWatchedEvent = "divergent_watched_event"
        case closeViolation = "close_violation"
        case watcherGap = "watcher_gap"
        case watcherRepeatOrReorder = "watcher_repeat_or_reorder"

        /// Which of the six checks finds it.
        public var check: Int {
            switch self {
            case .lostAcknowledgedBid, .acknowledgedSeqMismatch, .refusedBidInLog, .unattemptedBidInLog: 1
            case .seqGap, .duplicateBidId, .priceDecreased, .leaderChangeWithoutPriceRise, .currencyChanged,
                .epochDecreased, .invalidLog:
                2
            case .realTimeOrder: 3
            case .divergentState, .divergentWatchedEvent: 4
            case .closeViolation: 5
            case .watcherGap, .watcherRepeatOrReorder: 6
            }
        }
    }

    public var kind: Kind
    public var auction: AuctionID?
    public var detail: String

    init(_ kind: Kind, _ auction: AuctionID?, _ detail: String) {
        self.kind = kind
        self.auction = auction
        self.detail = detail
    }

    public var description: String { "[\(kind.rawValue)] \(auction.map { "\($0): " } ?? "")\(detail)" }
}

/// What a check found, with the figures of the run.
public struct CheckReport: Sendable {
    public static let checkNames = [
        1: "acknowledged bids are logged, logged bids were sent",
        2: "logs are well formed (ids once, seq 1…n, price, leader, epochs)",
        3: "real-time order of acknowledged bids",
        4: "shown states and watched events are the log's",
        5: "one close, nothing after it, the right result",
        6: "watchers: in order, no gap, no repeat",
    ]

    public var operations = 0
    public var outcomes: [String: Int] = [:]
    public var watchedEvents = 0
    public var faults: [String: Int] = [:]
    public var auctions = 0
    public var loggedEvents = 0
    public var violations: [Violation] = []

    public var passed: Bool { violations.isEmpty }

    mutating func add(_ found: [Violation]) { violations += found }

    public func violations(ofCheck check: Int) -> [Violation] { violations.filter { $0.kind.check == check } }

    /// The summary `artpay check` prints.
    public var summary: String {
        var lines = [
            "operations: \(operations) ("
                + outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")",
            "auctions: \(auctions), logged events: \(loggedEvents), watched events: \(watchedEvents)",
            "faults: "
                + (faults.isEmpty
                    ? "none"
                    : faults.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")),
        ]
        for check in 1...6 {
            let found = violations(ofCheck: check)
            lines.append(
                "check \(check) (\(Self.checkNames[check]!)): " + (found.isEmpty ? "ok" : "\(found.count) VIOLATIONS"))
            for violation in found.prefix(5) { lines.append("    \(violation)") }
            if found.count > 5 { lines.append("    … and \(found.count - 5) more") }
        }
        if let crashes = faults["crash"], crashes > 0 {
            lines.append(
                "WARNING: \(crashes) node crash(es) during the run (not a safety violation; see the node logs)")
        }
        lines.append(passed ? "result: PASS" : "result: FAIL (\(violations.count) violations)")
        return lines.joined(separator: "\n")
    }
}
