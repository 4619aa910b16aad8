import Prometheus
import Synchronization

/// Writes figures a node keeps anyway — its counters (also in `/v1/cluster`), its view, its
/// actors' counts — into its Prometheus registry at each scrape. Gauges are set; a counter advances
/// by what its total grew since the last scrape, so it stays a counter (monotonic, back to zero
/// only with the process) without a second count kept beside the first.
final class MetricExport: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let exported = Mutex<[String: Int64]>([:])
    /// Recorded as each forward answers: a histogram, the one series here not taken at a scrape.
    let forwardDuration: DurationHistogram

    /// Buckets from 0.25 ms to 5 s: a command crossing one hop takes about a millisecond.
    static let durationBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2_500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5),
    ]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        forwardDuration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "artpay_forwarded_command_duration_seconds", unitName: "",
                helpText: "Time from forwarding a command to its owner's answer (or its timeout)."),
            labels: [], buckets: Self.durationBuckets)
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
