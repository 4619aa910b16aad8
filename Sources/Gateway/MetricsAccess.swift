import ArtPayClient
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Who may read `/metrics`: with a bearer token configured (`http.metricsBearerToken`), only a
/// scraper that sends it (compared in constant time); without one, anyone, at most
/// `perAddress` scrapes at once and one a second after that from each address — a scraper takes one
/// every few seconds, and the page is the most expensive one a node renders for an anonymous caller.
/// (A node behind a proxy sees one address: configure the token there.)
final class MetricsAccess: Sendable {
    private let bearerToken: String?
    private let buckets = Mutex<[String: TokenBucket]>([:])
    static let perAddress = 10.0

    init(bearerToken: String?) {
        self.bearerToken = bearerToken?.isEmpty == false ? bearerToken : nil
    }

    func check(_ request: Request, from address: String) throws(APIError) {
        if let bearerToken {
            let presented = request.headers[.authorization].map { Array($0.utf8) } ?? []
            let expected = Array("Bearer \(bearerToken)".utf8)
            // Every byte compared whatever the first difference: the time says nothing of the token.
            var difference: UInt8 = presented.count == expected.count ? 0 : 1
            for (a, b) in zip(presented, expected) { difference |= a ^ b }
            guard difference == 0 else {
                throw APIError(
                    .unauthorized, code: "metrics_token_required",
                    detail: "The metrics need the scrape token (http.metricsBearerToken).",
                    headers: [.wwwAuthenticate: "Bearer"])
            }
            return
        }
        let now = ContinuousClock.now
        let decision = buckets.withLock { buckets in
            if buckets.count > 10_000 { buckets.removeAll(keepingCapacity: true) }
            var bucket = buckets[address] ?? TokenBucket(capacity: Self.perAddress, refillPerSecond: 1, now: now)
            let decision = bucket.take(now: now)
            buckets[address] = bucket
            return decision
        }
        guard decision.allowed else {
            throw APIError(
                .tooManyRequests, code: RefusedBeforeWork.rateLimited.rawValue,
                detail: "Too many metrics scrapes from this address; retry in \(decision.retryAfterSeconds) s.",
                headers: [.retryAfter: "\(decision.retryAfterSeconds)"])
        }
    }
}
