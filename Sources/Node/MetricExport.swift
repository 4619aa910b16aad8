import Metrics
import Prometheus
import Synchronization

/// Writes figures a node keeps anyway — its counters (also in `/v1/cluster`), its view, its
/// actors' counts — into its Prometheus registry at each scrape. Gauges are set; a counter advances
/// by what its total grew since the last scrape, so it stays a counter (monotonic, back to zero
/// only with the process) without a second count kept beside the first. What is counted or timed as
/// it happens goes through swift-metrics instead (`RegistryMetricsFactory`).
final class MetricExport: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let exported = Mutex<[String: Int64]>([:])
    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
        registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels).set(value)
    }

    func counter(_ name: String, _ help: String, total: Int, labels: [(String, String)] = []) {
        let counter = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
        let key = Self.key(name, labels)
        let grown = exported.withLock { exported -> Int64 in
            let grown = Int64(total) - exported[key, default: 0]
            if grown > 0 { exported[key] = Int64(total) }
            return grown
        }
        if grown > 0 { counter.increment(by: grown) }
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    private static func key(_ name: String, _ labels: [(String, String)]) -> String {
        labels.reduce(name) { $0 + "|" + $1.0 + "=" + $1.1 }
    }
}

/// What a node counts and times as it happens, through swift-metrics: forwards, their latency and
/// failures, and the shards it gives up.
struct NodeEventMetrics: Sendable {
    let forwarded: CoreMetrics.Counter
    let failures: CoreMetrics.Counter
    let duration: Timer
    let shardReleases: CoreMetrics.Counter

    init(factory: any MetricsFactory) {
        forwarded = CoreMetrics.Counter(label: "artpay_forwarded_commands_total", factory: factory)
        failures = CoreMetrics.Counter(label: "artpay_forwarded_command_failures_total", factory: factory)
        duration = Timer(label: "artpay_forwarded_command_duration_seconds", factory: factory)
        shardReleases = CoreMetrics.Counter(label: "artpay_shard_releases_total", factory: factory)
    }
}
