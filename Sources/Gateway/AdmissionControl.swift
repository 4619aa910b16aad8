import ArtPayClient
import DequeModule
import Hummingbird
import NIOCore
import NIOPosix
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
        var admitted = 0
        var refusedWaiting = 0
        var refusedFull = 0
    }

    let limits: AdmissionLimits
    private let state = Mutex(State())

    init(limits: AdmissionLimits) {
        self.limits = limits
    }

    /// Waits for a place, at most `limits.maximumWait`; whether one was given (then ``release()``
    /// must follow).
    func admit() async -> Bool {
        let limits = self.limits
        return await withCheckedContinuation { continuation in
            let (immediate, id): (Bool?, UInt64) = state.withLock { state in
                if state.inFlight < limits.maximumInFlight {
                    state.inFlight += 1
                    state.admitted += 1
                    return (true, 0)
                }
                if state.waiting.count >= limits.maximumWaiting {
                    state.refusedFull += 1
                    return (false, 0)
                }
                state.nextId += 1
                state.waiting.append(Waiter(id: state.nextId, continuation: continuation))
                return (nil, state.nextId)
            }
            if let immediate {
                continuation.resume(returning: immediate)
                return
            }
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .init(limits.maximumWait)) { [self] in
                let expired: Waiter? = state.withLock { state in
                    guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                    state.refusedWaiting += 1
                    return state.waiting.remove(at: index)
                }
                expired?.continuation.resume(returning: false)
            }
        }
    }

    /// Gives a place back: to the oldest waiter, or free.
    func release() {
        let next: Waiter? = state.withLock { state in
            if let next = state.waiting.popFirst() {
                state.admitted += 1
                return next
            }
            state.inFlight -= 1
            return nil
        }
        next?.continuation.resume(returning: true)
    }

    func metricsText() -> String {
        let state = self.state.withLock {
            ($0.inFlight, $0.waiting.count, $0.admitted, $0.refusedWaiting, $0.refusedFull)
        }
        return """
            # HELP artpay_http_in_flight Requests being handled now (admission control).
            # TYPE artpay_http_in_flight gauge
            artpay_http_in_flight \(state.0)
            # HELP artpay_http_admission_waiting Requests waiting for a place now.
            # TYPE artpay_http_admission_waiting gauge
            artpay_http_admission_waiting \(state.1)
            # HELP artpay_http_admitted_total Requests given a place.
            # TYPE artpay_http_admitted_total counter
            artpay_http_admitted_total \(state.2)
            # HELP artpay_http_shed_total Requests refused with 503 overloaded, by why.
            # TYPE artpay_http_shed_total counter
            artpay_http_shed_total{reason="wait_expired"} \(state.3)
            artpay_http_shed_total{reason="queue_full"} \(state.4)

            """
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
