import ClusterCore
import Testing

/// The node's periodic work, as the schedule the node loop sleeps towards.
@Suite struct NodeChoresTests {
    @Test func eachChoreFallsDueOncePerItsInterval() {
        var chores = NodeChores()
        #expect(chores.due(at: .zero).isEmpty, "a starting node subscribes and catches up on its own")
        #expect(chores.nextDeadline == .seconds(2))
        #expect(chores.due(at: .milliseconds(1_999)).isEmpty)
        #expect(chores.due(at: .seconds(2)) == [.renewSubscriptions, .catchUpReadModel, .closeDueAuctions])
        #expect(chores.due(at: .seconds(3)).isEmpty, "not again within the interval")
        #expect(chores.nextDeadline == .seconds(4))
        #expect(chores.due(at: .seconds(4)) == [.renewSubscriptions, .catchUpReadModel, .closeDueAuctions])
        #expect(chores.due(at: .seconds(15)) == NodeChores.Chore.allCases, "passivation every 15 s")
        #expect(chores.nextDeadline == .seconds(17))
    }

    @Test func aLoopThatWokeLate_doesEachChoreOnce_andGoesOnFromThen() {
        var chores = NodeChores()
        // A paused process asks 40 s late: each chore once, not once per missed interval.
        #expect(chores.due(at: .seconds(42)) == NodeChores.Chore.allCases)
        #expect(chores.due(at: .seconds(42)).isEmpty)
        #expect(chores.nextDeadline == .seconds(44))
    }

    @Test func aViewChange_makesSubscriptionsAndDueClosesDueAtOnce() {
        var chores = NodeChores()
        _ = chores.due(at: .seconds(2))
        #expect(chores.viewChanged(at: .milliseconds(2_500)) == [.renewSubscriptions, .closeDueAuctions])
        #expect(chores.due(at: .seconds(4)) == [.catchUpReadModel], "the others moved with the view change")
        #expect(chores.due(at: .milliseconds(4_500)) == [.renewSubscriptions, .closeDueAuctions])
    }

    @Test func intervalsAreTheNodes() {
        let intervals = NodeChores.Intervals(
            renewSubscriptions: .seconds(1), catchUpReadModel: .seconds(5), closeDueAuctions: .seconds(3),
            passivateIdleAuctions: .seconds(60))
        var chores = NodeChores(intervals: intervals, start: .seconds(10))
        #expect(chores.nextDeadline == .seconds(11))
        #expect(chores.due(at: .seconds(13)) == [.renewSubscriptions, .closeDueAuctions])
        #expect(chores.due(at: .seconds(15)) == [.renewSubscriptions, .catchUpReadModel])
    }
}
