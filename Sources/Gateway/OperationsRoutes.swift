import AuctionCore
import ClusterCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Node

/// What operators and the web room read beside the API: liveness and readiness, the cluster as this
/// node sees it, the server's clock, the OpenAPI document and `/metrics`.
extension GatewayAPI {
    func addOperationsRoutes(
        to router: Router<GatewayContext>, isReady: @escaping @Sendable () async -> Bool
    ) {
        router.get("/health/live") { _, _ -> HTTPResponse.Status in .ok }
        router.get("/health/ready") { _, _ -> HTTPResponse.Status in await isReady() ? .ok : .serviceUnavailable }
        router.get("/v1/cluster") { _, _ -> Response in try await self.clusterView() }
        router.get("/v1/time") { _, _ -> Response in
            try Self.json(["now": self.clock.now().millisecondsSinceEpoch])
        }
        router.get("/openapi.json") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        let metricsAccess = MetricsAccess(bearerToken: configuration.metricsBearerToken)
        router.get("/metrics") { request, context -> Response in
            try metricsAccess.check(request, from: context.clientAddress)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: await self.metricsText())))
        }
    }

    /// The `/metrics` text: the gateway's gauges and the process read just now, then the node's.
    func metricsText() async -> String {
        process.update()
        admission.updateGauges()
        connections.updateGauges()
        streams.updateGauges(in: registry)
        return await node.metricsText()
    }

    /// `GET /v1/cluster`: this node's view, each member with its web address.
    func clusterView() async throws -> Response {
        var snapshot = await node.snapshot
        let seen = node.memberAddressesSeen
        for index in snapshot.members.indices {
            guard let id = NodeID(rawValue: snapshot.members[index].id), let address = seen[id] else { continue }
            snapshot.members[index].http = Self.webAddress(of: address, port: configuration.clusterHTTPPort)
        }
        return try Self.json(snapshot)
    }

    /// A member's web origin: its cluster host with the cluster's HTTP port (IPv6 in brackets).
    static func webAddress(of member: NodeAddress, port: Int?) -> String? {
        guard let port else { return nil }
        let host = member.host.contains(":") ? "[\(member.host)]" : member.host
        return "http://\(host):\(port)"
    }
}
