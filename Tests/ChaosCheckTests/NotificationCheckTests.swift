import AuctionCore
import ChaosCheck
import Testing

@Suite struct NotificationCheckTests {
    /// The honest run ends with bob winning: bob must hear `won`, alice and carol `lost`; someone
    /// who never bid hears nothing.
    @Test func theEndOfAnAuction_isDueToEachOfItsBidders() throws {
        let run = HistoryCheckerTests.honest()
        let closedAt = try #require(run.log.last { if case .closed = $0.event { true } else { false } }?.seq)
        let users: Set<UserID> = ["alice", "bob", "carol", "dave"].map { UserID(rawValue: $0)! }.reduce(into: []) {
            $0.insert($1)
        }
        let expected = NotificationCheck.expectedEndNotifications(logs: [run.auction: run.log], for: users)
        let lot = run.auction.rawValue
        #expect(
            expected == [
                UserID(rawValue: "bob")!: ["\(lot):\(closedAt):won"],
                UserID(rawValue: "alice")!: ["\(lot):\(closedAt):lost"],
                UserID(rawValue: "carol")!: ["\(lot):\(closedAt):lost"],
            ])

        var received = expected
        #expect(NotificationCheck.missing(expected: expected, received: received).isEmpty)
        received[UserID(rawValue: "carol")!] = []
        #expect(
            NotificationCheck.missing(expected: expected, received: received) == [
                "carol never got \(lot):\(closedAt):lost"
            ])
    }

    /// Only the bidders asked about count; an auction still running is due nothing.
    @Test func aRunningAuction_isDueNothing() {
        var run = Scenario()
        run.bid("a1", by: "alice", maximum: 5_000)
        let expected = NotificationCheck.expectedEndNotifications(
            logs: [run.auction: run.log], for: [UserID(rawValue: "alice")!])
        #expect(expected.isEmpty)
    }
}
