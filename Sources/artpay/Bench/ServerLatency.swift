import ArtPayClient
import Foundation

/// Latency of admitted bids as the nodes measured it (their `artpay_http_request_duration_seconds`
/// histogram, answers 201 and 422 on the bid route), between two scrapes of `/metrics`. wrk's own
/// figures mix in the fast 503s a node sheds under overload; these are of the bids it took on, from
/// the request's arrival (waiting for a place included) to its answer.
struct ServerLatency {
    /// Cumulative bucket counts by upper bound (seconds), summed over nodes.
    var buckets: [Double: Double] = [:]

    /// Hummingbird names routes by their pattern, captures in braces.
    static let route = "/v1/auctions/{id}/bids"

    init(metricsTexts: [String]) {
        for text in metricsTexts {
            for line in text.split(separator: "\n") where line.hasPrefix("artpay_http_request_duration_seconds_bucket{")
            {
                guard line.contains("route=\"\(Self.route)\""),
                    line.contains("status=\"201\"") || line.contains("status=\"422\""),
                    let leStart = line.range(of: "le=\""),
                    let leEnd = line[leStart.upperBound...].firstIndex(of: "\""),
                    let value = line.split(separator: " ").last.flatMap({ Double($0) })
                else { continue }
                let le = line[leStart.upperBound..<leEnd]
                let bound = le == "+Inf" ? Double.infinity : Double(le) ?? .infinity
                buckets[bound, default: 0] += value
            }
        }
    }

    /// The histogram of what happened between `earlier` and `self`.
    func since(_ earlier: ServerLatency) -> ServerLatency {
        var delta = self
        for (bound, count) in earlier.buckets { delta.buckets[bound, default: 0] -= count }
        return delta
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside its bucket; nil without data.
    func quantile(_ q: Double) -> Double? {
        let bounds = buckets.keys.sorted()
        guard let total = bounds.last.flatMap({ buckets[$0] }), total > 0 else { return nil }
        let rank = q * total
        var lower = 0.0
        var below = 0.0
        for bound in bounds {
            let count = buckets[bound] ?? 0
            if count >= rank {
                guard bound.isFinite else { return lower * 1_000 }
                let inBucket = count - below
                let fraction = inBucket > 0 ? (rank - below) / inBucket : 1
                return (lower + (bound - lower) * fraction) * 1_000
            }
            lower = bound.isFinite ? bound : lower
            below = count
        }
        return nil
    }

    static func scrape(_ nodes: [String]) async -> ServerLatency {
        var texts: [String] = []
        for node in nodes {
            guard let answer = try? await APIClient.send("GET", node + "/metrics", timeout: 5) else { continue }
            texts.append(String(decoding: answer.body, as: UTF8.self))
        }
        return ServerLatency(metricsTexts: texts)
    }
}
