public import Hummingbird
public import Metrics
import Node
public import Prometheus
import Synchronization

/// Request counts and latency histograms by route, method and status, and bids by outcome, in the
/// node's Prometheus registry (swift-prometheus): `artpay_http_requests_total`,
/// `artpay_http_request_duration_seconds`, `artpay_bids_total`.
public final class HTTPMetrics: Sendable {
    /// Upper bounds of the latency buckets.
    /// Bids take a few milliseconds; the buckets run from 0.25 ms to 5 s, fine enough between 5 ms
    /// and 500 ms to read a p99 under load (not the library's 5 ms to 10 s default).
    static let buckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2_500), .milliseconds(5),
        .microseconds(7_500), .milliseconds(10), .milliseconds(15), .milliseconds(20), .milliseconds(30),
        .milliseconds(50), .milliseconds(75), .milliseconds(100), .milliseconds(150), .milliseconds(200),
        .milliseconds(300), .milliseconds(500), .milliseconds(750), .seconds(1), .milliseconds(2_500), .seconds(5),
    ]

    private let registry: PrometheusCollectorRegistry
    private let factory: any MetricsFactory
    /// The series made so far, so a request costs a lookup, not a registration: routes, methods,
    /// statuses and outcomes are few.
    private let requestSeries = Mutex<[RequestKey: (count: Prometheus.Counter, latency: DurationHistogram)]>([:])
    private let bidCounters = Mutex<[String: CoreMetrics.Counter]>([:])

    private struct RequestKey: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    /// - Parameters:
    ///   - registry: the node's (a bench server keeps its own).
    ///   - factory: where bids are counted as they are answered (the node's, so a test can read
    ///     them); by default the registry's.
    public init(
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), factory: (any MetricsFactory)? = nil
    ) {
        self.registry = registry
        self.factory = factory ?? RegistryMetricsFactory(registry: registry)
    }

    func record(route: String, method: String, status: Int, duration: Duration) {
        let key = RequestKey(route: route, method: method, status: status)
        let series = requestSeries.withLock { made in
            if let series = made[key] { return series }
            let labels = [("route", route), ("method", method), ("status", "\(status)")]
            let series = (
                count: registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        namespace: "artpay", subsystem: "http", metricName: "requests", unitName: "total",
                        helpText: "HTTP requests by route, method and status."),
                    labels: labels),
                latency: registry.makeDurationHistogram(
                    descriptor: MetricNameDescriptor(
                        namespace: "artpay", subsystem: "http", metricName: "request_duration", unitName: "seconds",
                        helpText: "HTTP request latency by route, method and status."),
                    labels: labels, buckets: Self.buckets)
            )
            made[key] = series
            return series
        }
        series.count.increment()
        series.latency.record(duration)
    }

    func bid(outcome: String) {
        let counter = bidCounters.withLock { made in
            if let counter = made[outcome] { return counter }
            let counter = CoreMetrics.Counter(
                label: "artpay_bids_total", dimensions: [("outcome", outcome)], factory: factory)
            made[outcome] = counter
            return counter
        }
        counter.increment()
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
        do {
            let response = try await next(request, context)
            metrics.record(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
                status: response.status.code, duration: .now - started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.record(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status,
                duration: .now - started)
            throw error
        }
    }
}
