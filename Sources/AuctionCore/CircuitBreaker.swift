/// A circuit breaker for calls to the payment provider, as a pure state machine on the caller's
/// clock: `permit(now:)` before a call, `record(_:startedAt:now:)` after it.
///
/// Why: when the provider is down or throttling, retries from every settlement would pile onto it
/// and hold every owner's tasks; a settlement's deadline is days, so waiting is cheap. Only the
/// provider's own trouble counts — transport errors, timeouts, 5xx, 429 and calls slower than
/// `slowCall` — never a business outcome such as a declined card, which would otherwise let
/// buyers with bad cards switch payments off for everyone.
///
/// Closed: calls pass; the outcomes of the last `window` are kept, and once there are at least
/// `minimumCalls` of them with `failureRatePercent` or more bad, it opens. Open: nothing passes
/// until `openFor` has passed (doubling with every opening in a row, up to `maximumOpenFor`).
/// Half-open: `halfOpenProbes` calls pass and are judged together, as in the closed state: once
/// `failureRatePercent` of them are bad it opens again (for twice as long), and once they have all
/// reported with fewer bad it closes (and forgets the openings). So a provider that fails a third
/// of its calls — well under the rate that opens a closed breaker — does not keep it open for
/// minutes on the luck of three probes; a probe that never reports counts as bad.
public struct CircuitBreaker: Sendable {
    public struct Settings: Hashable, Sendable {
        public var window: Duration = .seconds(60)
        public var minimumCalls = 5
        public var failureRatePercent = 50
        public var slowCall: Duration = .seconds(5)
        public var openFor: Duration = .seconds(30)
        public var maximumOpenFor: Duration = .seconds(300)
        public var halfOpenProbes = 3

        public init() {}
    }

    public enum State: Hashable, Sendable {
        case closed
        case open(until: Timestamp)
        case halfOpen(since: Timestamp, started: Int, succeeded: Int, failed: Int)

        /// `closed`, `open` or `half_open`: the metric's and `/v1/cluster`'s label.
        public var name: String {
            switch self {
            case .closed: "closed"
            case .open: "open"
            case .halfOpen: "half_open"
            }
        }
    }

    /// How a provider call ended, as far as the breaker is concerned.
    public enum CallResult: Hashable, Sendable {
        /// An answer that is the provider working: success, or a business outcome (a decline).
        case answered
        case transportFailure
        case timedOut
        case serverError(status: Int)
        case rateLimited

        var isFailure: Bool {
            if case .answered = self { return false }
            return true
        }
    }

    public let settings: Settings
    public private(set) var state: State = .closed
    /// Openings in a row without a successful half-open round: the next open lasts
    /// `openFor · 2^openings`.
    public private(set) var openings = 0
    /// Every time it opened since it was made: a counter for the metrics.
    public private(set) var timesOpened = 0
    private var recent: [(at: Timestamp, bad: Bool)] = []

    public init(settings: Settings = .init()) {
        self.settings = settings
    }

    /// Whether a call may start now. In half-open it counts the call as one of the probes, so call
    /// it once per call and only when about to make it.
    public mutating func permit(now: Timestamp) -> Bool {
        switch state {
        case .closed:
            return true
        case .open(let until):
            guard now >= until else { return false }
            state = .halfOpen(since: now, started: 1, succeeded: 0, failed: 0)
            return true
        case .halfOpen(let since, let started, let succeeded, let failed):
            guard started < settings.halfOpenProbes else {
                // A probe whose outcome never came (its task was cancelled, its shard moved) is a
                // slow call, so bad: judge the round rather than wait for it for ever.
                if now > since.advanced(by: settings.slowCall) {
                    judgeProbes(succeeded: succeeded, failed: settings.halfOpenProbes - succeeded, now: now)
                }
                return false
            }
            state = .halfOpen(since: since, started: started + 1, succeeded: succeeded, failed: failed)
            return true
        }
    }

    /// The state's name as of `now`: an open breaker whose wait is over lets the next call through
    /// as a probe, so it is `half_open` — what an operator should see after an outage that no call
    /// has followed yet, rather than `open` for as long as the provider is not needed.
    public func stateName(at now: Timestamp) -> String {
        if case .open(let until) = state, now >= until { return "half_open" }
        return state.name
    }

    /// When the breaker lets calls through again, if it is open.
    public var retryAt: Timestamp? {
        if case .open(let until) = state { return until }
        return nil
    }

    /// Records the outcome of a call that `permit` let through.
    public mutating func record(_ result: CallResult, startedAt: Timestamp, now: Timestamp) {
        let bad = result.isFailure || startedAt.duration(to: now) > settings.slowCall
        switch state {
        case .closed:
            recent.append((now, bad))
            let horizon = now.advanced(by: .zero - settings.window)
            recent.removeAll { $0.at < horizon }
            let failures = recent.count { $0.bad }
            if recent.count >= settings.minimumCalls, failures * 100 >= settings.failureRatePercent * recent.count {
                open(now: now)
            }
        case .halfOpen(let since, let started, let succeeded, let failed):
            // A call that started before the probes did is not one of them.
            guard startedAt >= since else { return }
            let (succeeded, failed) = bad ? (succeeded, failed + 1) : (succeeded + 1, failed)
            state = .halfOpen(since: since, started: started, succeeded: succeeded, failed: failed)
            judgeProbes(succeeded: succeeded, failed: failed, now: now)
        case .open:
            // A call that started before it opened: its outcome no longer matters.
            break
        }
    }

    /// Opens once the bad probes reach the failure rate of the round; closes once every probe has
    /// reported with fewer; otherwise waits for the rest.
    private mutating func judgeProbes(succeeded: Int, failed: Int, now: Timestamp) {
        let probes = settings.halfOpenProbes
        if failed * 100 >= settings.failureRatePercent * probes {
            open(now: now)
        } else if succeeded + failed >= probes {
            state = .closed
            openings = 0
            recent = []
        }
    }

    private mutating func open(now: Timestamp) {
        var length = settings.openFor
        for _ in 0..<min(openings, 16) { length = min(length * 2, settings.maximumOpenFor) }
        state = .open(until: now.advanced(by: min(length, settings.maximumOpenFor)))
        openings += 1
        timesOpened += 1
        recent = []
    }
}
