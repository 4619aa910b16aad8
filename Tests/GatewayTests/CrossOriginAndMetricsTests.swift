import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Browser origins and `/metrics`: no other origin by default, listed ones by name (never `*`);
/// the metrics behind a scrape token when one is set, rate limited per address when not.
@Suite struct CrossOriginAndMetricsTests {
    static let origin = HTTPField.Name("Origin")!
    static let requestMethod = HTTPField.Name("Access-Control-Request-Method")!
    static let allowOrigin = HTTPField.Name("Access-Control-Allow-Origin")!

    @Test func noOtherOrigin_byDefault() async throws {
        try await GatewayHarness.run { client, _ in
            let preflight = try await client.execute(
                uri: "/v1/auctions", method: .options,
                headers: [Self.origin: "https://evil.example", Self.requestMethod: "POST"])
            #expect(preflight.status == .forbidden)
            let listed = try await client.execute(
                uri: "/v1/auctions", method: .get, headers: [Self.origin: "https://evil.example"])
            #expect(listed.status == .ok)
            #expect(listed.headers[Self.allowOrigin] == nil, "a browser keeps the page from reading it")
        }
    }

    @Test func aListedOrigin_isAllowedByName_preflightAndAnswers() async throws {
        try await GatewayHarness.run(configure: { $0.crossOrigin = CrossOriginPolicy(allowedOrigins: ["https://room.example"]) }) {
            client, _ in
            let preflight = try await client.execute(
                uri: "/v1/auctions/lot-1/bids", method: .options,
                headers: [Self.origin: "https://room.example", Self.requestMethod: "POST"])
            #expect(preflight.status == .noContent)
            #expect(preflight.headers[Self.allowOrigin] == "https://room.example")
            #expect(preflight.headers[HTTPField.Name("Access-Control-Allow-Headers")!]?.contains("authorization") == true)
            let listed = try await client.execute(
                uri: "/v1/auctions", method: .get, headers: [Self.origin: "https://room.example"])
            #expect(listed.headers[Self.allowOrigin] == "https://room.example")
            #expect(listed.headers[.vary]?.contains("Origin") == true)
            let other = try await client.execute(
                uri: "/v1/auctions", method: .options, headers: [Self.origin: "https://other.example", Self.requestMethod: "GET"])
            #expect(other.status == .forbidden)
        }
    }

    @Test func metrics_needTheScrapeToken_whenOneIsSet() async throws {
        try await GatewayHarness.run(configure: { $0.metricsBearerToken = "scrape-secret" }) { client, _ in
            let anonymous = try await client.execute(uri: "/metrics", method: .get)
            #expect(anonymous.status == .unauthorized)
            let wrong = try await client.execute(
                uri: "/metrics", method: .get, headers: [.authorization: "Bearer scrape-secreT"])
            #expect(wrong.status == .unauthorized)
            let scraped = try await client.execute(
                uri: "/metrics", method: .get, headers: [.authorization: "Bearer scrape-secret"])
            #expect(scraped.status == .ok)
            #expect(String(buffer: scraped.body).contains("artpay_"))
        }
    }

    @Test func publicMetrics_areRateLimitedPerAddress() async throws {
        try await GatewayHarness.run { client, _ in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<30 { statuses.append(try await client.execute(uri: "/metrics", method: .get).status) }
            #expect(statuses.prefix(5).allSatisfy { $0 == .ok })
            #expect(statuses.contains(.tooManyRequests), "\(statuses)")
        }
    }

    /// The process figures an operator needs beside the node's own (read from /proc at each
    /// scrape), and the placement gauges the shards alert sums.
    @Test func metrics_includeTheProcessAndThePlacement() async throws {
        try await GatewayHarness.run { client, _ in
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            func value(_ name: String) -> Double? {
                text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                    .flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect((value("process_resident_memory_bytes") ?? 0) > 1_000_000, "\(text.suffix(800))")
            #expect((value("process_open_fds") ?? 0) > 3)
            #expect((value("process_max_fds") ?? 0) >= (value("process_open_fds") ?? .infinity))
            #expect((value("process_cpu_seconds_total") ?? 0) > 0)
            let started = try #require(value("process_start_time_seconds"))
            let now = Date().timeIntervalSince1970
            #expect(started <= now + 1 && started > now - 3_600, "started \(started), now \(now)")
            #expect(text.contains("# HELP process_start_time_seconds"))
            // One node alone places every shard on itself and is its own majority.
            #expect(value("artpay_shards_placed_here") == 1_024)
            #expect(value("artpay_cluster_reaches_majority") == 1)
        }
    }

    /// Every answer names its request: the client's id when valid, else a new one (errors too).
    @Test func everyAnswer_carriesARequestId() async throws {
        try await GatewayHarness.run { client, _ in
            let name = HTTPField.Name("X-Request-ID")!
            let echoed = try await client.send(.get, "/v1/time", headers: [name: "client-abc.1"])
            #expect(echoed.headers[name] == "client-abc.1")
            let fresh = try await client.send(.get, "/v1/time")
            #expect(fresh.headers[name].map { !$0.isEmpty && $0 != "client-abc.1" } == true)
            let replaced = try await client.send(.get, "/v1/time", headers: [name: "not valid\u{7f}"])
            #expect(replaced.headers[name].map { $0.allSatisfy { $0.isHexDigit } } == true)
            let missing = try await client.send(.get, "/v1/auctions/none-such", headers: [name: "lost-1"])
            #expect(missing.status == .notFound)
            #expect(missing.headers[name] == "lost-1")
        }
    }
}
