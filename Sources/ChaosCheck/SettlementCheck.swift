public import AuctionCore

/// The settlement checks of a chaos run: the payment provider's ledger against the final logs.
///
/// - **No lot captured twice**: at most one capture per lot at the provider (a second-chance round
///   captures only when the first never did).
/// - **Every capture is recorded and right**: each capture at the provider has its `captured`
///   event in the lot's log with the same amount, equal to that round's invoice total — and every
///   `captured` event has its capture at the provider.
/// - **Every sold lot ends**: in one finished state (`settled`, `refunded`, `cancelled`,
///   `unsold`), or is still legitimately waiting, with its reason counted (a deadline not reached,
///   a provider call the owner is still resending).
/// - **No authorization the settlement does not know of**: money held on a buyer's card that no
///   settlement will capture or release (a retry that did not reuse the logged key).
/// - **No key reused with other parameters** (the provider's count of such refusals).
///
/// Pure: the ledger entries and the logs in, a report out.
public enum SettlementCheck {
    /// One money movement at the provider, as its ledger lists it.
    public struct Movement: Hashable, Sendable {
        public enum Kind: String, Hashable, Sendable { case authorization, decline, capture, cancellation, refund }
        public var kind: Kind
        public var auction: AuctionID?
        public var intent: String
        public var amount: Int64
        public var idempotencyKey: String?

        public init(kind: Kind, auction: AuctionID?, intent: String, amount: Int64, idempotencyKey: String?) {
            self.kind = kind
            self.auction = auction
            self.intent = intent
            self.amount = amount
            self.idempotencyKey = idempotencyKey
        }
    }

    public struct Report: Sendable {
        public var soldLots = 0
        public var settled = 0
        public var captures = 0
        public var finished: [String: Int] = [:]
        /// Lots still waiting at the end, by reason.
        public var waiting: [String: Int] = [:]
        public var violations: [String] = []

        public var passed: Bool { violations.isEmpty }

        public var summary: String {
            let ends = finished.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let waits = waiting.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return "settlements: \(soldLots) sold lots, \(captures) captures at the provider; finished: "
                + (ends.isEmpty ? "none" : ends) + "; waiting: " + (waits.isEmpty ? "none" : waits)
                + "; \(violations.count) violations — result: \(passed ? "PASS" : "FAIL")"
        }
    }

    public static func check(
        ledger: [Movement], logs: [AuctionID: [StoredEvent]], keyConflicts: Int, at now: Timestamp
    ) -> Report {
        var report = Report()
        let capturesByLot = Dictionary(grouping: ledger.filter { $0.kind == .capture }, by: \.auction)
        report.captures = ledger.count { $0.kind == .capture }
        for (lot, captures) in capturesByLot {
            guard let lot else {
                report.violations.append("a capture at the provider names no lot: \(captures.map(\.intent))")
                continue
            }
            if captures.count > 1 {
                report.violations.append(
                    "\(lot) captured \(captures.count) times at the provider: \(captures.map { "\($0.amount) (\($0.idempotencyKey ?? "no key"))" })"
                )
            }
        }
        if keyConflicts > 0 {
            report.violations.append(
                "the provider refused \(keyConflicts) reused idempotency keys with other parameters")
        }
        for (lot, log) in logs {
            var state: AuctionState?
            var recorded: [(round: Int, amount: Int64, total: Int64)] = []
            var intents: Set<String> = []
            for stored in log.sorted(by: { $0.seq < $1.seq }) {
                guard (try? AuctionState.advance(&state, with: stored.event, auction: lot, seq: stored.seq)) != nil
                else {
                    report.violations.append("the log of \(lot) does not replay at seq \(stored.seq)")
                    break
                }
                if case .settlement(.authorized(_, let intent, _)) = stored.event { intents.insert(intent.rawValue) }
                if case .settlement(.captured(_, let amount, _)) = stored.event, let settlement = state?.settlement {
                    recorded.append(
                        (settlement.round, amount.minorUnits, settlement.invoice?.total.minorUnits ?? -1))
                }
            }
            guard let settlement = state?.settlement else { continue }
            report.soldLots += 1
            let atProvider = capturesByLot[lot] ?? []
            for capture in recorded where capture.amount != capture.total {
                report.violations.append(
                    "\(lot) round \(capture.round) captured \(capture.amount), its invoice total is \(capture.total)")
            }
            if recorded.count != atProvider.count {
                report.violations.append(
                    "\(lot): \(recorded.count) captures in the log, \(atProvider.count) at the provider")
            } else {
                for (logged, provided) in zip(recorded, atProvider) where logged.amount != provided.amount {
                    report.violations.append(
                        "\(lot): the log captured \(logged.amount), the provider \(provided.amount)")
                }
            }
            // An authorization the settlement never learned of holds the buyer's money for nothing
            // (a retry that did not reuse the logged key), unless its call is still being resent.
            if settlement.inFlight?.operation != .authorize {
                let unknown = ledger.filter {
                    $0.auction == lot && $0.kind == .authorization && !intents.contains($0.intent)
                }
                for authorization in unknown {
                    report.violations.append(
                        "\(lot): authorization \(authorization.intent) (\(authorization.amount), key \(authorization.idempotencyKey ?? "none")) is held at the provider, unknown to the settlement"
                    )
                }
            }
            guard let phase = settlement.phase else { continue }
            if phase.isFinished {
                report.finished[phase.rawValue, default: 0] += 1
                if phase == .settled { report.settled += 1 }
            } else {
                report.waiting[waitingReason(settlement, now: now), default: 0] += 1
                // A deadline long past with nothing done is a wedged settlement, not a waiting one.
                let overdue = now.advanced(by: .seconds(-30))
                if settlement.inFlight == nil, let dueBy = settlement.dueBy, phase == .due || phase == .declined,
                    dueBy < overdue
                {
                    report.violations.append("\(lot) is still \(phase.rawValue) 30 s after its deadline \(dueBy)")
                }
                if phase == .secondChanceOffered, let offer = settlement.offer, offer.expiresAt < overdue {
                    report.violations.append("\(lot)'s second-chance offer is still open 30 s after it expired")
                }
            }
        }
        return report
    }

    /// Why an unfinished settlement may legitimately still wait at `now`; a violation otherwise.
    static func waitingReason(_ settlement: Settlement, now: Timestamp) -> String {
        if let call = settlement.inFlight { return "\(call.operation.rawValue) call being resent" }
        switch settlement.phase {
        case .due?, .declined?:
            if let dueBy = settlement.dueBy, now < dueBy {
                return "\(settlement.phase!.rawValue), deadline not reached"
            }
            return "\(settlement.phase!.rawValue), default due"
        case .secondChanceOffered?:
            if let offer = settlement.offer, now < offer.expiresAt { return "second-chance offer open" }
            return "second-chance offer expiring"
        case .defaulted?:
            return "defaulted, offer being made"
        case .authorized?:
            return "authorized, capture due"
        default:
            return "\(settlement.phase?.rawValue ?? "none")"
        }
    }
}
