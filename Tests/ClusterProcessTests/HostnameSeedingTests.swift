import ArtPayClient
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Nodes named as Kubernetes names them: each advertises a host name and seeds the others by name
/// (a StatefulSet's pods behind a headless Service). Names are added to `/etc/hosts` for the test
/// (root, as in CI) and removed after it. In `FailoverTests`' serialized suite: its clusters use the
/// same addresses, and two at once on a busy machine did not converge in one clean-clone run.
extension FailoverTests {
    @Test func aClusterSeededByHostNames_formsOnce_andServesBids() async throws {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let names = (1...3).map { "artpay-\(suffix)-\($0).test" }
        // ProcessCluster puts node i on 127.0.0.(i + 3).
        let entries = names.enumerated().map { "127.0.0.\($0.offset + 4) \($0.element)" }
        try HostsFile.add(entries)
        defer { HostsFile.remove(entries) }

        let cluster = try await ProcessCluster.start(secret: "hostname-seeding-cluster-secret", names: names)
        defer { cluster.stop() }
        // Node 1 is a seed under its name and under its address: still one member, by its name.
        for node in cluster.nodes {
            let view = try #require(await node.clusterView())
            #expect(view.members.count == 3, "\(node.id) sees \(view.members.map { "\($0.id)@\($0.address)" })")
            #expect(view.members.allSatisfy { names.contains(String($0.address.split(separator: ":")[0])) })
        }
        let http = cluster.nodes.map { "http://\($0.httpAddress.host):\($0.httpAddress.port)" }
        let admin = try await APIClient(base: http[0]).loggedIn("root", "root-password")
        let auction = "named-\(suffix)"
        try await admin.call(
            "POST", "/v1/auctions",
            json: [
                "id": auction, "title": "Lot of a named cluster", "currency": "EUR", "startingPrice": 1_000,
                "closesAt": Date().addingTimeInterval(3_600).formatted(.iso8601),
            ])
        try await APIClient(base: http[1]).call(
            "POST", "/v1/users", json: ["username": "nina", "password": "nina-password"])
        for (index, base) in http.enumerated() {
            let bidder = try await APIClient(base: base).loggedIn("nina", "nina-password")
            let answer = try await bidder.call(
                "POST", "/v1/auctions/\(auction)/bids",
                json: ["bidId": "nina-\(index)", "maximum": 2_000 + 1_000 * index, "currency": "EUR"])
            #expect(answer["outcome"] as? String == "leading", "through node \(index + 1): \(answer)")
        }
    }
}

/// Lines this test adds to `/etc/hosts`, and takes out again.
enum HostsFile {
    static let path = "/etc/hosts"

    static func add(_ lines: [String]) throws {
        let current = try String(contentsOfFile: path, encoding: .utf8)
        let separator = current.hasSuffix("\n") || current.isEmpty ? "" : "\n"
        try write(current + separator + lines.joined(separator: "\n") + "\n")
    }

    static func remove(_ lines: [String]) {
        guard let current = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = current.split(separator: "\n", omittingEmptySubsequences: false).filter {
            !lines.contains(String($0))
        }
        try? write(kept.joined(separator: "\n"))
    }

    /// In place (not by rename): in a container `/etc/hosts` is a mount point.
    private static func write(_ text: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw HarnessError("cannot write \(path): the hostname test needs root, as in CI")
        }
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.utf8))
    }
}
