import AuctionCore
import Testing

/// The breaker on a manual clock: an outage opens it, it stays open, probes close it again.
@Suite struct CircuitBreakerTests {
    static let t0 = Timestamp(millisecondsSinceEpoch: 10_000_000)

    static func at(_ seconds: Double) -> Timestamp { t0.advanced(by: .milliseconds(Int64(seconds * 1_000))) }

    /// Lets a call through at `seconds` and records `result` 100 ms later.
    @discardableResult
    static func call(_ breaker: inout CircuitBreaker, at seconds: Double, _ result: CircuitBreaker.CallResult) -> Bool {
        guard breaker.permit(now: at(seconds)) else { return false }
        breaker.record(result, startedAt: at(seconds), now: at(seconds + 0.1))
        return true
    }

    @Test func anOutage_opensIt_thenProbesCloseIt() {
        var breaker = CircuitBreaker()
        for second in 0..<4 { Self.call(&breaker, at: Double(second), .serverError(status: 503)) }
        #expect(breaker.state == .closed, "fewer than 5 calls never open it")
        Self.call(&breaker, at: 4, .timedOut)
        #expect(breaker.state == .open(until: Self.at(34.1)))
        #expect(breaker.timesOpened == 1)
        let duringOutage = breaker.permit(now: Self.at(20))
        #expect(!duringOutage, "open: nothing passes")
        #expect(breaker.retryAt == Self.at(34.1))
        #expect(breaker.stateName(at: Self.at(34)) == "open")
        #expect(breaker.stateName(at: Self.at(34.1)) == "half_open", "its wait over, the next call is a probe")
        // Half-open after 30 s: three probes pass, a fourth does not.
        let permitted = (0..<4).map { _ in breaker.permit(now: Self.at(35)) }
        #expect(permitted == [true, true, true, false])
        for _ in 0..<3 { breaker.record(.answered, startedAt: Self.at(35), now: Self.at(35.2)) }
        #expect(breaker.state == .closed)
        #expect(breaker.stateName(at: Self.at(36)) == "closed")
        #expect(breaker.openings == 0)
    }

    @Test func failedProbes_reopenIt_forTwiceAsLong_upToTheMaximum() {
        var breaker = CircuitBreaker()
        for second in 0..<5 { Self.call(&breaker, at: Double(second), .transportFailure) }
        #expect(breaker.retryAt == Self.at(34.1))
        /// Two of the three probes fail: half of them or more, so it opens again.
        func failTwoProbes(at seconds: Double) {
            let probes = (0..<2).map { _ in breaker.permit(now: Self.at(seconds)) }
            #expect(probes == [true, true])
            breaker.record(.rateLimited, startedAt: Self.at(seconds), now: Self.at(seconds + 0.1))
            #expect(breaker.retryAt == nil, "one bad probe of three is not yet half")
            breaker.record(.rateLimited, startedAt: Self.at(seconds), now: Self.at(seconds + 0.1))
        }
        failTwoProbes(at: 35)
        #expect(breaker.retryAt == Self.at(95.1), "60 s the second time")
        failTwoProbes(at: 96)
        #expect(breaker.retryAt == Self.at(216.1), "120 s")
        failTwoProbes(at: 217)
        failTwoProbes(at: 458)
        #expect(breaker.retryAt == Self.at(758.1), "capped at 5 minutes")
        #expect(breaker.timesOpened == 5)
    }

    /// The probes are judged together: one bad of three is under half, so the breaker closes — a
    /// provider failing a third of its calls does not keep it open on the luck of three probes.
    @Test func oneBadProbeOfThree_stillClosesIt() {
        var breaker = CircuitBreaker()
        for second in 0..<5 { Self.call(&breaker, at: Double(second), .serverError(status: 500)) }
        let probes = (0..<3).map { _ in breaker.permit(now: Self.at(35)) }
        #expect(probes == [true, true, true])
        breaker.record(.timedOut, startedAt: Self.at(35), now: Self.at(35.1))
        breaker.record(.answered, startedAt: Self.at(35), now: Self.at(35.2))
        #expect(breaker.stateName(at: Self.at(35.2)) == "half_open", "one probe has not reported")
        breaker.record(.answered, startedAt: Self.at(35), now: Self.at(35.3))
        #expect(breaker.state == .closed)
        #expect(breaker.openings == 0)
    }

    @Test func declines_neverOpenIt_slowCallsDo() {
        var breaker = CircuitBreaker()
        for second in 0..<50 { Self.call(&breaker, at: Double(second), .answered) }
        #expect(breaker.state == .closed)
        var slow = CircuitBreaker()
        for second in 0..<5 {
            _ = slow.permit(now: Self.at(Double(second)))
            slow.record(.answered, startedAt: Self.at(Double(second)), now: Self.at(Double(second) + 6))
        }
        #expect(slow.retryAt != nil, "answers after 6 s count as bad")
    }

    @Test func failures_outsideTheWindow_areForgotten_andHalfAreEnough() {
        var breaker = CircuitBreaker()
        for second in 0..<4 { Self.call(&breaker, at: Double(second), .serverError(status: 500)) }
        // A minute later those four are gone: four good calls and one bad stay closed.
        for second in 70..<74 { Self.call(&breaker, at: Double(second), .answered) }
        Self.call(&breaker, at: 74, .serverError(status: 502))
        #expect(breaker.state == .closed)
        // 5 bad of 10 in the window: 50 % opens it.
        for second in 75..<79 { Self.call(&breaker, at: Double(second), .serverError(status: 502)) }
        #expect(breaker.state != .closed)
    }

    /// A call started before the breaker opened is not a probe; a probe that never reports opens
    /// the breaker again instead of jamming it half-open.
    @Test func staleOutcomes_areIgnored_andALostProbeDoesNotJamIt() {
        var breaker = CircuitBreaker()
        let early = Self.at(0)
        let first = breaker.permit(now: early)
        #expect(first)
        for second in 1..<6 { Self.call(&breaker, at: Double(second), .serverError(status: 503)) }
        let permitted = (0..<3).map { _ in breaker.permit(now: Self.at(40)) }
        #expect(permitted == [true, true, true])
        breaker.record(.timedOut, startedAt: early, now: Self.at(41))
        #expect(
            breaker.state == .halfOpen(since: Self.at(40), started: 3, succeeded: 0, failed: 0),
            "the stale timeout is no probe")
        breaker.record(.answered, startedAt: Self.at(40), now: Self.at(40.5))
        // The other two probes never report: after a slow call's time it opens again.
        let meanwhile = breaker.permit(now: Self.at(44))
        #expect(!meanwhile)
        let afterwards = breaker.permit(now: Self.at(46))
        #expect(!afterwards)
        #expect(breaker.retryAt == Self.at(106), "open again, for twice as long")
    }
}
