public import Metrics
public import Prometheus

/// swift-metrics over the process's one Prometheus registry, with the help text and buckets this
/// system needs. Code that counts or times something as it happens (a bid, a forward, a fenced
/// append, a log append) records through the swift-metrics API against an injected factory —
/// this one in a node, `MetricsTestKit`'s `TestMetrics` in a test — so what it counts can be
/// checked without parsing `/metrics`.
///
/// Why not swift-prometheus's own `PrometheusMetricsFactory`: it registers every series without
/// help text (promtool's lint asks for one), and its default buckets (5 ms to 10 s) miss this
/// system's range; a family registered twice with different help text is a fatal error there, so
/// the text for a label lives in one place, `help`.
///
/// The factory is never bootstrapped globally: several nodes share one test process, each with its
/// own registry.
public struct RegistryMetricsFactory: MetricsFactory {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Help text of each series recorded through swift-metrics, by label.
    static let help: [String: String] = [
        "artpay_bids_total": "Bids answered, by outcome or rejection code.",
        "artpay_forwarded_commands_total": "Commands forwarded to another node.",
        "artpay_forwarded_command_failures_total": "Forwarded commands without an answer.",
        "artpay_forwarded_command_duration_seconds":
            "Time from forwarding a command to its owner's answer (or its timeout).",
        "artpay_shard_acquisitions_total": "Shard leases taken (each bumps the epoch).",
        "artpay_shard_releases_total":
            "Shard leases given up (the view placed the shard elsewhere, or lost a majority).",
        "artpay_fenced_appends_total": "Appends refused because another node took the shard.",
        "artpay_log_appends_total": "Transactions the log writer committed (group commit).",
        "artpay_log_appended_entries_total":
            "Auction entries those transactions carried (entries ÷ appends: the batch size).",
        "artpay_log_append_duration_seconds": "Time of one log append transaction, committed or failed.",
        "artpay_log_append_batch_size": "Auction entries (one per command) in each committed log append.",
        "artpay_log_append_failures_total": "Log append transactions the store refused or did not answer.",
        "artpay_webhook_deliveries_total": "Webhook delivery attempts this node made, by outcome.",
        "artpay_webhook_cursor_fenced_total": "Webhook deliverers stopped because another node took the endpoint's shard.",
        "artpay_read_model_apply_delay_seconds":
            "Time from an event's commit on its owner to its arrival in this node's read model (newest of each batch).",
    ]

    /// Buckets from 0.25 ms to 5 s: a bid takes about a millisecond, an append one round trip.
    public static let durationBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2_500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5),
    ]

    /// Batch sizes up to the log writer's 512 entries per transaction.
    static let valueBuckets: [String: [Double]] = [
        "artpay_log_append_batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    ]

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: Self.help[label] ?? "")
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)])
        -> any FloatingPointCounterHandler
    {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(
            descriptor: descriptor(label), labels: dimensions,
            buckets: Self.valueBuckets[label] ?? [1, 10, 100, 1_000, 10_000])
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: Self.durationBuckets)
    }

    // A series stays registered for the life of the process: handlers are looked up again by label,
    // and Prometheus expects a counter to stay.
    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}
