import ClusterCore
import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Seeded fuzzing of every operation in the OpenAPI document: random and broken path parameters,
/// query values, headers, tokens and bodies (wrong types, missing and unknown fields, edge numbers,
/// odd strings, invalid JSON and UTF-8, deep nesting). No answer may be a 500 or anything but
/// problem+json for an error, and the node must still serve normal requests afterwards.
/// `ARTPAY_FUZZ_REQUESTS` (default 1,500) and `ARTPAY_FUZZ_SEED` change the run.
@Suite struct APIFuzzTests {
    @Test func noRequest_crashesANodeOrGetsA500() async throws {
        let environment = ProcessInfo.processInfo.environment
        let requests = environment["ARTPAY_FUZZ_REQUESTS"].flatMap(Int.init) ?? 1_500
        let seed = environment["ARTPAY_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        try await GatewayHarness.run { client, _ in
            let document = try JSONSerialization.jsonObject(
                with: Data(try await client.send(.get, "/openapi.json").body.readableBytesView))
            let operations = Operation.all(in: document as? [String: Any] ?? [:])
            #expect(operations.count > 10)
            let admin = try await client.logIn("root", "root-password")
            let seller = try await client.signUp("fuzz-seller", roles: ["seller"])
            let bidder = try await client.signUp("fuzz-bidder")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-fuzz"), token: seller).status
                    == .created)
            let tokens: [String?] = [nil, admin, seller, bidder, "not.a.jwt", String(repeating: "e", count: 5_000)]
            var random = SeededRandom(seed: seed)
            var statuses: [Int: Int] = [:]
            for n in 0..<requests {
                let operation = operations[Int(random.next() % UInt64(operations.count))]
                var fuzz = Fuzzer(random: random)
                let uri = fuzz.uri(for: operation)
                let body = operation.hasBody || fuzz.chance(0.1) ? fuzz.body(for: operation) : nil
                var headers = HTTPFields()
                // Mostly a valid token, so requests get past authentication to the handlers.
                if let token = fuzz.chance(0.75) ? tokens[1 + fuzz.int(3)] : tokens[fuzz.int(tokens.count)] {
                    headers[.authorization] = fuzz.chance(0.9) ? "Bearer \(token)" : "Basic \(token)"
                }
                if body != nil { headers[.contentType] = fuzz.chance(0.9) ? "application/json" : "text/plain" }
                if fuzz.chance(0.1) { headers[HTTPField.Name("Last-Event-ID")!] = fuzz.string() }
                random = fuzz.random
                let response = try await client.execute(
                    uri: uri, method: operation.method, headers: headers, body: body)
                statuses[Int(response.status.code), default: 0] += 1
                let context =
                    "request \(n) (seed \(seed)): \(operation.method) \(uri) → \(response.status.code) \(String(buffer: response.body).prefix(300))"
                #expect(response.status.code < 500 || Self.retryable(response), "\(context)")
                if response.status.code >= 400 {
                    #expect(response.headers[.contentType] == "application/problem+json", "\(context)")
                    let problem =
                        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)))
                        as? [String: Any]
                    #expect(problem?["code"] is String, "\(context)")
                }
            }
            // Still serving, and still right (with a new token: the fuzz may have logged out everywhere).
            #expect(try await client.send(.get, "/health/live").status == .ok)
            let bid = try await client.send(
                .post, "/v1/auctions/lot-fuzz/bids", json: #"{"bidId":"after-fuzz","maximum":500000,"currency":"EUR"}"#,
                token: try await client.logIn("fuzz-bidder", "password-123"))
            #expect(bid.status == .created || bid.status == .ok, "\(String(buffer: bid.body))")
            print("fuzz seed \(seed): \(requests) requests, statuses \(statuses.sorted { $0.key < $1.key })")
        }
    }

    /// 503s that say "try again" are answers, not failures.
    static func retryable(_ response: TestResponse) -> Bool {
        response.status == .serviceUnavailable && response.headers[.retryAfter] != nil
    }
}

/// One documented operation, with what the fuzzer needs to know of it.
struct Operation {
    var method: HTTPRequest.Method
    var path: String
    var queryNames: [String]
    var bodyProperties: [String: String]
    var hasBody: Bool

    static func all(in document: [String: Any]) -> [Operation] {
        var found: [Operation] = []
        for (path, operations) in (document["paths"] as? [String: [String: Any]] ?? [:]).sorted(by: { $0.key < $1.key })
        {
            for (method, spec) in operations.sorted(by: { $0.key < $1.key }) {
                guard let spec = spec as? [String: Any], let method = HTTPRequest.Method(method.uppercased()) else {
                    continue
                }
                let responses = spec["responses"] as? [String: Any] ?? [:]
                // Streams stay open by design; their refusals are tested where they are served.
                let ok = responses["200"] as? [String: Any]
                if (ok?["content"] as? [String: Any])?["text/event-stream"] != nil || responses["101"] != nil {
                    continue
                }
                let parameters = spec["parameters"] as? [[String: Any]] ?? []
                let queryNames = parameters.compactMap { $0["in"] as? String == "query" ? $0["name"] as? String : nil }
                let schema =
                    (((spec["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"]
                    as? [String: Any])?["schema"] as? [String: Any]
                let properties = (schema?["properties"] as? [String: [String: Any]] ?? [:]).mapValues {
                    $0["type"] as? String ?? "any"
                }
                found.append(
                    Operation(
                        method: method, path: path, queryNames: queryNames, bodyProperties: properties,
                        hasBody: schema != nil))
            }
        }
        return found
    }
}

/// Makes the random parts of a request from a seeded generator.
struct Fuzzer {
    var random: SeededRandom

    mutating func int(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
    mutating func chance(_ p: Double) -> Bool { Double(random.next() % 1_000) < p * 1_000 }

    mutating func string() -> String {
        let choices = [
            "", "lot-fuzz", "a", "root", "EUR", "XXX", "eur", "0", "-1", "1e309", "null", "true", "🎨 Untitled",
            "'; DROP TABLE events; --",
            "../../etc/passwd", "%00", "\u{0}\u{1}\u{7f}", String(repeating: "x", count: 70),
            String(repeating: "ü", count: 3_000),
            "2026-13-45T99:99:99Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "{\"a\":1}", "\\", "\"",
        ]
        return choices[int(choices.count)]
    }

    mutating func number() -> String {
        let choices = [
            "0", "1", "-1", "5000", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.5", "1e18",
            "-0", "NaN",
        ]
        return choices[int(choices.count)]
    }

    mutating func value(depth: Int = 0) -> String {
        switch int(depth > 2 ? 4 : 6) {
        case 0: return "null"
        case 1: return chance(0.5) ? "true" : "false"
        case 2: return number()
        case 3: return json(string())
        case 4: return "[" + (0..<int(4)).map { _ in value(depth: depth + 1) }.joined(separator: ",") + "]"
        default:
            return "{" + (0..<int(4)).map { _ in "\(json(string())):\(value(depth: depth + 1))" }.joined(separator: ",")
                + "}"
        }
    }

    func json(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
        return String(decoding: data, as: UTF8.self).dropFirst().dropLast().description
    }

    /// A value a real client might send for a field of this name.
    mutating func plausible(_ field: String) -> String {
        switch field {
        case "currency": return ["EUR", "USD", "JPY", "GBP"][int(4)]
        case "closesAt", "opensAt":
            return Date().addingTimeInterval(Double(int(7_200)) - 600).formatted(.iso8601)
        case "password": return "password-\(int(1_000_000))"
        case "username": return "fuzz-user-\(int(50))"
        case "id", "bidId", "saleId": return "fuzz-\(int(200))"
        default: return "Lot \(int(100))"
        }
    }

    mutating func segment() -> String {
        let raw = chance(0.5) ? "lot-fuzz" : string()
        return raw.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "x"
    }

    mutating func uri(for operation: Operation) -> String {
        var path = operation.path
        while let open = path.firstIndex(of: "{"), let close = path[open...].firstIndex(of: "}") {
            path.replaceSubrange(open...close, with: segment())
        }
        var query: [String] = []
        for name in operation.queryNames where chance(0.6) {
            let value = chance(0.5) ? number() : string()
            query.append("\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")")
        }
        if chance(0.1) { query.append("unknown=\(number())") }
        return query.isEmpty ? path : path + "?" + query.joined(separator: "&")
    }

    mutating func body(for operation: Operation) -> ByteBuffer {
        switch int(10) {
        case 0: return ByteBuffer(string: "")
        case 1: return ByteBuffer(string: "{\"unterminated\": ")
        case 2: return ByteBuffer(bytes: [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])  // {"\xff\xfe":1}
        case 3: return ByteBuffer(string: String(repeating: "[", count: 30_000) + String(repeating: "]", count: 30_000))
        case 4: return ByteBuffer(string: value())
        default:
            // Mostly the right shape, with each field perhaps the wrong type, missing, or joined by an unknown one.
            var fields: [String] = []
            for (name, type) in operation.bodyProperties.sorted(by: { $0.key < $1.key }) where chance(0.85) {
                let right: String
                switch type {
                case "integer": right = chance(0.5) ? "\(1_000 + int(500_000))" : number()
                case "string": right = json(chance(0.5) ? plausible(name) : string())
                case "array": right = "[" + (0..<int(3)).map { _ in json(string()) }.joined(separator: ",") + "]"
                default: right = value()
                }
                fields.append("\(json(name)):\(chance(0.8) ? right : value())")
            }
            if chance(0.15) { fields.append("\(json(string())):\(value())") }
            return ByteBuffer(string: "{" + fields.joined(separator: ",") + "}")
        }
    }
}
