public import Testing

/// Polls `condition` until it holds, failing the test after `timeout`. Never a fixed sleep.
///
/// The default timeout is long: it only matters when the test fails, and a CI machine running the
/// whole suite on two cores (node processes, PostgreSQL, a few hundred tests at once, long
/// CPU-bound ones holding the cooperative threads) has kept tests that take a second alone from
/// running for 90 s.
public func eventually(
    _ what: String, timeout: Duration = .seconds(120), every interval: Duration = .milliseconds(5),
    sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: interval)
    }
    // Once more after the deadline: a test process whose threads were all busy elsewhere may wake
    // up past it with the condition long since true.
    if try await condition() { return }
    Issue.record("timed out waiting for: \(what)", sourceLocation: sourceLocation)
    throw TimedOut(what: what)
}

public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var description: String { "timed out waiting for: \(what)" }
}
