import Prometheus
import Synchronization

/// How many live streams (Server-Sent Events and WebSockets) a node serves at once, in total and
/// per caller (a user, or an address for anonymous streams).
///
/// Why: an idle stream still costs memory, a feed and a subscription at the auction's owner;
/// uncapped, one client could open thousands and take the node's memory and CPU. Each caller gets
/// a fair share, and the node a ceiling.
public struct StreamLimits: Sendable, Hashable {
    public var maximumStreams: Int
    public var maximumStreamsPerCaller: Int

    public init(maximumStreams: Int = 5_000, maximumStreamsPerCaller: Int = 32) {
        self.maximumStreams = maximumStreams
        self.maximumStreamsPerCaller = maximumStreamsPerCaller
    }
}

/// How a live stream is served; counted apart on `/metrics` (`transport` label), since an
/// operator sizes proxies and idle timeouts differently for each.
enum StreamTransport: String, Sendable, CaseIterable {
    case serverSentEvents = "sse"
    case webSocket = "websocket"
}

/// Hands out stream slots against ``StreamLimits``; thread-safe.
final class StreamLimiter: Sendable {
    /// A slot, given back once when the stream ends.
    final class Slot: Sendable {
        private let release: @Sendable () -> Void
        private let ended = Atomic(false)

        init(_ release: @escaping @Sendable () -> Void) {
            self.release = release
        }

        func end() {
            guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
            release()
        }
    }

    let limits: StreamLimits
    private let state = Mutex((total: 0, byCaller: [String: Int](), byTransport: [StreamTransport: Int]()))

    init(limits: StreamLimits) {
        self.limits = limits
    }

    /// A slot for `caller` (`user:<id>` or `ip:<address>`), or the error to answer with: 429 when
    /// the caller has its share, 503 when the node has its ceiling.
    func acquire(for caller: String, _ transport: StreamTransport) throws(APIError) -> Slot {
        let limits = self.limits
        let refusal: APIError? = state.withLock { state in
            if state.total >= limits.maximumStreams {
                return APIError(
                    .serviceUnavailable, code: "too_many_streams",
                    detail: "This node serves as many live streams as it can; retry shortly or use another node.",
                    headers: [.retryAfter: "5"])
            }
            if state.byCaller[caller, default: 0] >= limits.maximumStreamsPerCaller {
                return APIError(
                    .tooManyRequests, code: "too_many_streams",
                    detail: "At most \(limits.maximumStreamsPerCaller) live streams at once; close one first.",
                    extra: ["limit": "\(limits.maximumStreamsPerCaller)"], headers: [.retryAfter: "5"])
            }
            state.total += 1
            state.byCaller[caller, default: 0] += 1
            state.byTransport[transport, default: 0] += 1
            return nil
        }
        if let refusal { throw refusal }
        return Slot { [weak self] in
            self?.state.withLock { state in
                state.total -= 1
                let left = state.byCaller[caller, default: 1] - 1
                state.byCaller[caller] = left > 0 ? left : nil
                state.byTransport[transport, default: 1] -= 1
            }
        }
    }

    /// Sets `artpay_event_streams_open{transport}` in `registry`: the streams served now, by how
    /// (the limiter's count is the one count of them).
    func updateGauges(in registry: PrometheusCollectorRegistry) {
        let open = state.withLock { $0.byTransport }
        let descriptor = MetricNameDescriptor(
            namespace: "artpay", metricName: "event_streams_open", unitName: "",
            helpText: "Live event streams being served, by transport (Server-Sent Events or WebSocket).")
        for transport in StreamTransport.allCases {
            registry.makeGauge(descriptor: descriptor, labels: [("transport", transport.rawValue)])
                .set(Int64(open[transport, default: 0]))
        }
    }
}
