import AuctionCore
import Testing

@testable import ChaosCheck

/// A synthetic run: one client answered every 10 ms (100 answers/s), with faults placed by hand.
struct ImpactScenario {
    var history: [HistoryEntry] = []
    private var count = 0

    /// Answers sent every 10 ms in [from, to) seconds, each taking 5 ms, with `outcome`.
    mutating func answers(from: Double, to: Double, outcome: HistoryOperation.Outcome = .ok, every: Int64 = 10_000) {
        var at = Int64(from * 1e6)
        while at < Int64(to * 1e6) {
            count += 1
            history.append(
                .operation(
                    HistoryOperation(
                        client: 0, node: "n1", auction: AuctionID(rawValue: "lot")!,
                        bidId: BidID(rawValue: "b\(count)")!, bidder: UserID(rawValue: "u")!, maximum: 1,
                        invokedAt: at, completedAt: at + 5_000, outcome: outcome)))
            at += every
        }
    }

    mutating func fault(_ kind: String, _ target: String, at seconds: Double) {
        history.append(.fault(InjectedFault(at: Int64(seconds * 1e6), kind: kind, target: target)))
    }
}

@Suite struct FaultImpactTests {
    @Test func aRestartThatCostsOnlyItsDowntime_recoversAtOnce() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 10)
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        run.answers(from: 10.5, to: 20)
        let impact = FaultImpact.measure(history: run.history)
        #expect(impact.recoveries.count == 1)
        #expect(impact.recoveries[0].recoverySeconds == 0)
        #expect(abs(impact.recoveries[0].answeredPerSecondBefore - 100) < 0.5)
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)
    }

    @Test func aStallAfterPostgresIsBack_isAViolation() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 10)
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        // Nothing answered for 3 s after PostgreSQL is up (a wedged auction holding the clients).
        run.answers(from: 13.5, to: 20)
        let impact = FaultImpact.measure(history: run.history)
        let seconds = try! #require(impact.recoveries.first?.recoverySeconds)
        // The first one-second window with 80 % of the rate starts 0.2 s before the answers resume.
        #expect(abs(seconds - 2.8) < 0.05)
        let found = impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2)
        #expect(found.count == 1)
        #expect(found.first?.contains("restart #1") == true)
    }

    /// One busy second just before the restart is not the level to come back to (a clean-clone
    /// CI run: 223, 223 and 299 answers in the three seconds before, 231 in the first after).
    @Test func aBusySecondBeforeTheRestart_isNotTheBaseline() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 9)
        run.answers(from: 9, to: 10, every: 6_667)  // 150 a second
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        run.answers(from: 10.5, to: 20)
        let impact = FaultImpact.measure(history: run.history)
        #expect(abs((impact.recoveries.first?.answeredPerSecondBefore ?? 0) - 100) < 0.5)
        #expect(impact.recoveries.first?.recoverySeconds == 0)
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)
    }

    /// Just after a partition heals, the clients it held back answer in a burst; a restart then is
    /// judged against the calm seconds before the partition, not the burst (a clean-clone CI run:
    /// 377 and 390 answers a second after a heal, 220–300 in calm, 261–294 after the restart —
    /// reported as never recovered). With no calm second in the 30 s before, it is not judged.
    @Test func theBurstAfterAHeal_isNotTheBaseline_norIsAnotherFault() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 5)
        run.fault("partition", "n2", at: 5)
        run.fault("heal", "n2", at: 8)
        run.answers(from: 8, to: 10, every: 5_000)  // 200 a second: the held-back clients
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        run.answers(from: 10.5, to: 20, every: 12_000)  // 83 a second: above 80 % of the calm 100
        let impact = FaultImpact.measure(history: run.history)
        #expect(abs((impact.recoveries.first?.answeredPerSecondBefore ?? 0) - 100) < 0.5)
        #expect(impact.recoveries.first?.recoverySeconds == 0)
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)

        var early = ImpactScenario()
        early.answers(from: 0, to: 20)
        early.fault("pg-restart", "postgresql", at: 0.8)  // no whole second before it
        early.fault("pg-up", "postgresql", at: 1)
        let unjudged = FaultImpact.measure(history: early.history)
        #expect(unjudged.recoveries.first?.answeredPerSecondBefore == 0)
        #expect(unjudged.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)
        #expect(unjudged.summary.contains("not judged"))
    }

    /// A node killed and restarted runs slower for a while; a PostgreSQL restart in that while is
    /// judged against the rate just before it, not the calm level before the kill (a clean-clone
    /// CI run: 385 a second before the kill, 200–260 after its restart and after the PostgreSQL
    /// restart that followed 2.7 s later — reported as 3.2 s to recover).
    @Test func theAftermathOfAnEarlierFault_isNotHeldAgainstARestart() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 10)
        run.fault("kill", "n2", at: 10)
        run.fault("restart", "n2", at: 12)
        run.answers(from: 12, to: 30, every: 16_667)  // 60 a second from then on
        run.fault("pg-restart", "postgresql", at: 14.5)
        run.fault("pg-up", "postgresql", at: 14.7)
        let impact = FaultImpact.measure(history: run.history)
        #expect(abs((impact.recoveries.first?.answeredPerSecondBefore ?? 0) - 60) < 1)
        #expect(impact.recoveries.first?.recoverySeconds == 0)
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)
    }

    /// The accepted rate printed beside the baseline is counted over the same second, so the two
    /// figures describe one moment: here 100 answered of which 60 accepted, not a mean with the busy second.
    @Test func acceptedBeforeAndAfter_areCountedInTheSameSecondsAsTheBaseline() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 7)
        run.answers(from: 7, to: 8, every: 16_667)  // 60 accepted …
        run.answers(from: 7.005, to: 8, outcome: .rejected, every: 25_000)  // … and 40 refused: the slowest second
        run.answers(from: 8, to: 9, every: 6_667)  // 150 accepted
        run.answers(from: 9, to: 10, every: 5_000)  // 200 accepted
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        run.answers(from: 10.5, to: 11.5, every: 12_500)  // 80 a second
        run.answers(from: 11.5, to: 20, every: 10_000)
        let recovery = try! #require(FaultImpact.measure(history: run.history).recoveries.first)
        #expect(abs(recovery.answeredPerSecondBefore - 100) < 0.5)
        #expect(abs(recovery.acceptedPerSecondBefore - 60) < 0.5)
        #expect(abs(recovery.acceptedPerSecondAfter - 80) < 0.5)
    }

    @Test func aRateThatNeverComesBackBeforeTheNextFault_isAViolation() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 10)
        run.fault("pg-restart", "postgresql", at: 10)
        run.fault("pg-up", "postgresql", at: 10.5)
        run.answers(from: 10.5, to: 15, every: 20_000)  // half the rate before
        run.fault("kill", "n2", at: 15)
        run.fault("restart", "n2", at: 18)
        run.answers(from: 15, to: 25)
        let impact = FaultImpact.measure(history: run.history)
        #expect(impact.recoveries.first?.recoverySeconds == nil)
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).count == 1)
    }

    @Test func requestsAreCountedByPhase_andUnknownsInCalmAreBounded() {
        var run = ImpactScenario()
        run.answers(from: 0, to: 5)
        run.fault("pause", "n2", at: 5)
        run.answers(from: 5, to: 8, outcome: .unknown)
        run.fault("resume", "n2", at: 8)
        run.answers(from: 8, to: 11, outcome: .unknown)  // the grace period after the heal
        run.answers(from: 11, to: 20)
        var impact = FaultImpact.measure(history: run.history)
        #expect(impact.phases["pause"] == FaultImpact.Phase(requests: 300, unknown: 300))
        #expect(impact.phases["after pause"] == FaultImpact.Phase(requests: 300, unknown: 300))
        #expect(impact.phases["calm"] == FaultImpact.Phase(requests: 1_400, unknown: 0))
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).isEmpty)

        run.answers(from: 20, to: 21, outcome: .unknown)
        impact = FaultImpact.measure(history: run.history)
        #expect(impact.phases["calm"] == FaultImpact.Phase(requests: 1_500, unknown: 100))
        #expect(impact.violations(maxCalmUnknownShare: 0.01, maxRecoverySeconds: 2).count == 1)
    }

    @Test func eachFaultIsPairedWithItsOwnHeal() {
        let windows = FaultImpact.faultWindows([
            InjectedFault(at: 1, kind: "kill", target: "n1"),
            InjectedFault(at: 2, kind: "partition", target: "n2"),
            InjectedFault(at: 3, kind: "restart", target: "n1"),
            InjectedFault(at: 4, kind: "heal", target: "n2"),
            InjectedFault(at: 5, kind: "crash", target: "n3"),
        ])
        #expect(
            windows == [
                .init(kind: "kill", target: "n1", start: 1, end: 3),
                .init(kind: "partition", target: "n2", start: 2, end: 4),
                .init(kind: "crash", target: "n3", start: 5, end: nil),
            ])
    }
}
