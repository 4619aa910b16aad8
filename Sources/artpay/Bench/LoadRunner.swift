import Histogram

/// What one request of a load test came to.
enum RequestOutcome {
    case accepted
    case rejected
    case failed
}

/// The figures of one load test.
struct LoadResult {
    var accepted = 0
    var rejected = 0
    var failed = 0
    /// Request latency in microseconds.
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var elapsed: Duration = .zero

    var requests: Int { accepted + rejected + failed }
    var seconds: Double {
        let (whole, attoseconds) = elapsed.components
        return Double(whole) + Double(attoseconds) / 1e18
    }
    var acceptedPerSecond: Double { Double(accepted) / seconds }
    var requestsPerSecond: Double { Double(requests) / seconds }

    func percentileMilliseconds(_ percentile: Double) -> Double {
        Double(latency.valueAtPercentile(percentile)) / 1_000
    }

    mutating func merge(_ other: LoadResult) {
        accepted += other.accepted
        rejected += other.rejected
        failed += other.failed
        latency.add(other.latency)
    }
}

/// Runs `bidders` concurrent loops of `request` for `duration`, each bidder waiting for its reply
/// before sending the next (closed loop), and measures every request. Stops by itself.
func runLoad(
    bidders: Int, duration: Duration,
    _ request: @escaping @Sendable (_ bidder: Int, _ iteration: Int) async -> RequestOutcome
) async -> LoadResult {
    let clock = ContinuousClock()
    let start = clock.now
    let deadline = start.advanced(by: duration)
    var total = await withTaskGroup(of: LoadResult.self) { group in
        for bidder in 0..<bidders {
            group.addTask {
                var result = LoadResult()
                var iteration = 0
                while clock.now < deadline {
                    let sent = clock.now
                    let outcome = await request(bidder, iteration)
                    let micros = (clock.now - sent).components
                    _ = result.latency.record(
                        UInt64(micros.seconds * 1_000_000 + micros.attoseconds / 1_000_000_000_000))
                    switch outcome {
                    case .accepted: result.accepted += 1
                    case .rejected: result.rejected += 1
                    case .failed: result.failed += 1
                    }
                    iteration += 1
                }
                return result
            }
        }
        var merged = LoadResult()
        for await part in group { merged.merge(part) }
        return merged
    }
    total.elapsed = clock.now - start
    return total
}
