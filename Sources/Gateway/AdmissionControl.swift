import ArtPayClient
import DequeModule
import Hummingbird
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// How much work a node takes on at once: requests in progress, and how long one may wait for a
/// place.
///
/// Why: past its capacity a node that queues everything answers everyone late — bids whose
/// answers arrive after the client gave up are worse than a fast "retry shortly". With a cap, the
/// admitted requests keep their normal latency and the rest get a 503 with `Retry-After` at once
/// (a client retries with the same bid id, on this node or another).
public struct AdmissionLimits: Sendable, Hashable {
    /// Requests handled at once (0: no admission control).
    public var maximumInFlight: Int
    /// How long a request may wait for a place before it is refused.
    public var maximumWait: Duration
    /// Requests waiting at most; beyond it a request is refused without waiting.
    public var maximumWaiting: Int

    public init(maximumInFlight: Int = 64, maximumWait: Duration = .milliseconds(20), maximumWaiting: Int = 256) {
        self.maximumInFlight = maximumInFlight
        self.maximumWait = maximumWait
        self.maximumWaiting = maximumWaiting
    }
}

/// Places for requests against ``AdmissionLimits``: first come, first served; a place that frees
/// goes to the oldest waiter still within its wait. Thread-safe.
final class AdmissionControl: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var inFlight = 0
        var waiting = Deque<Waiter>()
        var nextId: UInt64 = 0
    }

    /// The series in the node's registry.
    private struct Metrics: Sendable {
        let inFlight: Gauge
        let waiting: Gauge
        let admitted: Counter
        let shedWaitExpired: Counter
        let shedQueueFull: Counter

        init(_ registry: PrometheusCollectorRegistry) {
            inFlight = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "artpay", subsystem: "http", metricName: "in_flight", unitName: "",
                    helpText: "Requests being handled now (admission control)."))
            waiting = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "artpay", subsystem: "http", metricName: "admission_waiting", unitName: "",
                    helpText: "Requests waiting for a place now."))
            admitted = registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "artpay", subsystem: "http", metricName: "admitted", unitName: "total",
                    helpText: "Requests given a place."))
            let shed = MetricNameDescriptor(
                namespace: "artpay", subsystem: "http", metricName: "shed", unitName: "total",
                helpText: "Requests refused with 503 overloaded, by why.")
            shedWaitExpired = registry.makeCounter(descriptor: shed, labels: [("reason", "wait_expired")])
            shedQueueFull = registry.makeCounter(descriptor: shed, labels: [("reason", "queue_full")])
        }
    }

    let limits: AdmissionLimits
    private let state = Mutex(State())
    private let metrics: Metrics

    init(limits: AdmissionLimits, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.limits = limits
        self.metrics = Metrics(registry)
    }

    /// Waits for a place, at most `limits.maximumWait`; whether one was given (then ``release()``
    /// must follow).
    func admit() async -> Bool {
        let limits = self.limits
        return await withCheckedContinuation { continuation in
            let (immediate, id): (Bool?, UInt64) = state.withLock { state in
                if state.inFlight < limits.maximumInFlight {
                    state.inFlight += 1
                    return (true, 0)
                }
                if state.waiting.count >= limits.maximumWaiting { return (false, 0) }
                state.nextId += 1
                state.waiting.append(Waiter(id: state.nextId, continuation: continuation))
                return (nil, state.nextId)
            }
            if let immediate {
                (immediate ? metrics.admitted : metrics.shedQueueFull).increment()
                continuation.resume(returning: immediate)
                return
            }
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .init(limits.maximumWait)) { [self] in
                let expired: Waiter? = state.withLock { state in
                    guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiting.remove(at: index)
                }
                guard let expired else { return }
                metrics.shedWaitExpired.increment()
                expired.continuation.resume(returning: false)
            }
        }
    }

    /// Gives a place back: to the oldest waiter, or free.
    func release() {
        let next: Waiter? = state.withLock { state in
            if let next = state.waiting.popFirst() { return next }
            state.inFlight -= 1
            return nil
        }
        guard let next else { return }
        metrics.admitted.increment()
        next.continuation.resume(returning: true)
    }

    /// Sets the gauges in `registry` (the counters count as things happen).
    func updateGauges() {
        let (inFlight, waiting) = state.withLock { ($0.inFlight, $0.waiting.count) }
        metrics.inFlight.set(Int64(inFlight))
        metrics.waiting.set(Int64(waiting))
    }
}

/// Admission control for the API's routes: a request gets a place (``AdmissionControl``) or a 503
/// `overloaded` with `Retry-After` before any work is done for it. Health, metrics and the
/// OpenAPI document are outside it (an overloaded node must still say how it is); a live stream
/// holds its place only until its answer head is out (streams have their own caps).
struct AdmissionMiddleware<Context: RequestContext>: RouterMiddleware {
    let control: AdmissionControl

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard control.limits.maximumInFlight > 0 else { return try await next(request, context) }
        guard await control.admit() else {
            throw APIError(
                .serviceUnavailable, code: RefusedBeforeWork.overloaded.rawValue,
                detail:
                    "This node is at capacity; retry shortly (a bid with the same bid id), here or on another node.",
                headers: [.retryAfter: "1"])
        }
        defer { control.release() }
        return try await next(request, context)
    }
}
