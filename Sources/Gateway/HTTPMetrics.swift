import Foundation
public import Hummingbird
import Synchronization

/// Request counts and latency histograms by route and status, and bids by outcome, rendered in
/// Prometheus text format next to the cluster metrics.
public final class HTTPMetrics: Sendable {
    /// Upper bounds of the latency buckets, in seconds.
    /// Bids take a few milliseconds; the buckets run from 0.25 ms to 5 s, fine enough between 5 ms
    /// and 500 ms to read a p99 under load.
    static let buckets: [Double] = [
        0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
        0.5, 0.75, 1, 2.5, 5,
    ]

    private struct Series {
        var count = 0
        var sum = 0.0
        var buckets = [Int](repeating: 0, count: HTTPMetrics.buckets.count)
    }

    private struct State {
        var requests: [String: Series] = [:]
        var bids: [String: Int] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    func record(route: String, method: String, status: Int, seconds: Double) {
        let key = "route=\"\(route)\",method=\"\(method)\",status=\"\(status)\""
        state.withLock { state in
            var series = state.requests[key] ?? Series()
            series.count += 1
            series.sum += seconds
            for (index, bound) in Self.buckets.enumerated() where seconds <= bound { series.buckets[index] += 1 }
            state.requests[key] = series
        }
    }

    func bid(outcome: String) {
        state.withLock { $0.bids[outcome, default: 0] += 1 }
    }


    func text() -> String {
        let snapshot = state.withLock { $0 }
        var lines = [
            "# HELP artpay_http_requests_total HTTP requests by route, method and status.",
            "# TYPE artpay_http_requests_total counter",
        ]
        for (key, series) in snapshot.requests.sorted(by: { $0.key < $1.key }) {
            lines.append("artpay_http_requests_total{\(key)} \(series.count)")
        }
        lines += [
            "# HELP artpay_http_request_duration_seconds HTTP request latency by route, method and status.",
            "# TYPE artpay_http_request_duration_seconds histogram",
        ]
        for (key, series) in snapshot.requests.sorted(by: { $0.key < $1.key }) {
            for (index, bound) in Self.buckets.enumerated() {
                lines.append(
                    "artpay_http_request_duration_seconds_bucket{\(key),le=\"\(bound)\"} \(series.buckets[index])")
            }
            lines.append("artpay_http_request_duration_seconds_bucket{\(key),le=\"+Inf\"} \(series.count)")
            lines.append("artpay_http_request_duration_seconds_sum{\(key)} \(String(format: "%.6f", series.sum))")
            lines.append("artpay_http_request_duration_seconds_count{\(key)} \(series.count)")
        }
        lines += [
            "# HELP artpay_bids_total Bids answered, by outcome or rejection code.", "# TYPE artpay_bids_total counter",
        ]
        for (outcome, count) in snapshot.bids.sorted(by: { $0.key < $1.key }) {
            lines.append("artpay_bids_total{outcome=\"\(outcome)\"} \(count)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Measures every request for `HTTPMetrics`, by the matched route pattern (never the raw path, so
/// ids do not explode the series).
public struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HTTPMetrics

    public init(metrics: HTTPMetrics) {
        self.metrics = metrics
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws
        -> Response
    {
        let started = ContinuousClock.now
        func seconds() -> Double {
            let elapsed = (ContinuousClock.now - started).components
            return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        }
        do {
            let response = try await next(request, context)
            metrics.record(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
                status: response.status.code,
                seconds: seconds())
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.record(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status,
                seconds: seconds())
            throw error
        }
    }
}
