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
}
