import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct OpenAPITests {
    /// Every route of the router is in the document, and the document names no route the router
    /// lacks.
    @Test func document_listsExactlyTheRoutes() async throws {
        try await GatewayHarness.run { client, harness in
            let served = try await client.send(.get, "/openapi.json")
            #expect(served.status == .ok)
            let document = try JSONSerialization.jsonObject(with: Data(served.body.readableBytesView)) as? [String: Any]
            #expect(document?["openapi"] as? String == "3.1.0")
            let paths = document?["paths"] as? [String: [String: Any]] ?? [:]
            let documented = Set(
                paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
            let router = harness.api.router(isReady: { true })
            let routes =
                router.routes.map { ($0.path, $0.method) }
                + harness.api.webSocketRouter().routes.map { ($0.path, $0.method) }
            let routed = Set(
                routes.map { (path, method) in
                    let parts = "\(path)".split(separator: "/").map {
                        $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0)
                    }
                    return "\(method.rawValue) /" + parts.joined(separator: "/")
                })
            #expect(
                routed.subtracting(documented).isEmpty,
                "routes missing from the document: \(routed.subtracting(documented).sorted())")
            #expect(
                documented.subtracting(routed).isEmpty,
                "documented routes that do not exist: \(documented.subtracting(routed).sorted())")
        }
    }
}
