import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing

@testable import Gateway

/// The web room is compiled into the binary from `Sources/Gateway/Web/` by `scripts/embed-web`:
/// the two must not drift apart, and every node serves the files with the right type.
@Suite struct WebAssetsTests {
    static let webDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/Gateway/Web")

    @Test func theCompiledFiles_areTheFilesOfTheWebDirectory() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.webDirectory.path)
            .filter { !$0.hasPrefix(".") }.sorted()
        #expect(names == WebAssets.files.keys.sorted(), "run scripts/embed-web after changing Sources/Gateway/Web/")
        for name in names {
            var text = try String(contentsOf: Self.webDirectory.appendingPathComponent(name), encoding: .utf8)
            if text.hasSuffix("\n") { text.removeLast() }
            #expect(WebAssets.files[name] == text, "\(name) differs from its compiled copy: run scripts/embed-web")
        }
    }

    @Test func everyFile_hasAContentType_andTheIndexLoadsOnlyServedFiles() throws {
        for name in WebAssets.files.keys {
            #expect(WebAssets.contentType(of: name) != nil, "\(name) would be refused")
        }
        let index = try #require(WebAssets.files["index.html"])
        let referenced = index.matches(of: /\/assets\/([A-Za-z0-9._-]+)/).map { String($0.1) }
        #expect(!referenced.isEmpty)
        for name in referenced { #expect(WebAssets.files[name] != nil, "index.html loads /assets/\(name)") }
        for (name, text) in WebAssets.files where name.hasSuffix(".js") {
            for match in text.matches(of: /from\s+['"]\.\/([A-Za-z0-9._-]+)['"]/) {
                #expect(WebAssets.files[String(match.1)] != nil, "\(name) imports ./\(match.1)")
            }
        }
    }

    @Test func aNode_servesThePages_itsClock_andItsMembersWebAddresses() async throws {
        try await GatewayHarness.run(configure: { $0.clusterHTTPPort = 8_100 }) { client, _ in
            let index = try await client.send(.get, "/")
            #expect(index.status == .ok)
            #expect(index.headers[.contentType] == "text/html; charset=utf-8")
            #expect(index.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("default-src 'self'") == true)
            #expect(String(buffer: index.body).contains("/assets/"))
            let script = try await client.send(.get, "/assets/app.js")
            #expect(script.headers[.contentType] == "text/javascript; charset=utf-8")
            #expect(try await client.send(.get, "/assets/missing.js").status == .notFound)
            #expect(try await client.send(.get, "/assets/..%2FPackage.swift").status == .notFound)
            let before = Int64(Date().timeIntervalSince1970 * 1_000)
            let time = try await client.send(.get, "/v1/time")
            let now = try #require(time.json["now"] as? Int64)
            #expect(now >= before - 1_000 && now <= Int64(Date().timeIntervalSince1970 * 1_000) + 1_000)
            try await eventually("the node lists itself with its web address") {
                let cluster = try await client.send(.get, "/v1/cluster")
                let members = cluster.json["members"] as? [[String: Any]] ?? []
                return members.contains { ($0["http"] as? String)?.hasSuffix(":8100") == true }
            }
        }
    }
}
