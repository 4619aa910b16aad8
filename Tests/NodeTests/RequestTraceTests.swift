import AuctionCore
import ClusterCore
import Foundation
import Logging
import NIOCore
import Node
import Synchronization
import TestSupport
import Testing

/// One bid followed across nodes: the client request's id travels in the forwarded command's frame
/// and the owner logs it; logs can be one JSON object per line.
@Suite struct RequestTraceTests {
    @Test func theRequestId_travelsWithAForwardedCommand_andBothNodesLogIt() async throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "test.trace") { label in
            JSONLogHandler(label: label) { line in lines.withLock { $0.append(line) } }
        }
        logger.logLevel = .debug
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 3, store: store, logger: logger)
            defer { Task { await cluster.stop() } }
            try await cluster.converged()
            // A lot owned by another node than the first: the command is forwarded.
            let members = (1...3).map { NodeID(rawValue: "node-\($0)")! }
            let id = (0..<200).lazy.map { AuctionID(rawValue: "traced-\($0)")! }.first {
                Placement.owner(of: ShardMap().shard(of: $0), among: members) != members[0]
            }!
            let created = await RequestTrace.$id.withValue("req-create-1") {
                await cluster.nodes[0].node.submit(.create(ClusterNodeTests.terms(id)), to: id)
            }
            #expect(created.value != nil, "\(created)")
            try await eventually("both nodes logged the request") {
                let traced = lines.withLock { $0 }.compactMap(Self.object).filter {
                    $0["request"] as? String == "req-create-1"
                }
                return traced.contains { $0["message"] as? String == "forwarded a command" }
                    && traced.contains {
                        $0["message"] as? String == "ran a forwarded command" && $0["result"] as? String == "accepted"
                    }
            }
            let line = try #require(lines.withLock { $0 }.first { $0.contains("req-create-1") })
            #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1, "one object per line: \(line)")
            let object = try #require(Self.object(line))
            #expect(object["level"] as? String == "debug")
            #expect(object["label"] as? String == "test.trace")
            #expect((object["time"] as? String)?.hasSuffix("Z") == true)
        }
    }

    @Test func aRequestFrame_keepsItsRequestId_andOneWithoutItStillDecodes() throws {
        let terms = ClusterNodeTests.terms(AuctionID(rawValue: "framed")!)
        let with = ClusterFrame.request(
            id: 7, hops: 1, auction: terms.auctionId, command: .create(terms), issuer: .node, requestId: "abc-1.2:3_x")
        #expect(try ClusterFrame.decode(with.encode()) == with)
        let without = ClusterFrame.request(id: 8, hops: 0, auction: terms.auctionId, command: .close, issuer: .node)
        #expect(try ClusterFrame.decode(without.encode()) == without)
        let forged = ClusterFrame.request(
            id: 9, hops: 0, auction: terms.auctionId, command: .close, issuer: .node, requestId: "no spaces\nor lines")
        #expect(throws: WireError.invalid("request id")) { try ClusterFrame.decode(forged.encode()) }
    }

    private static func object(_ line: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
}
