public import Hummingbird
public import Node

/// The HTTP side of a node. Today: health, the cluster view and metrics; the bidding API follows.
public enum GatewayRouter {
    /// - Parameter isReady: whether the node is a member with a working store.
    public static func build(node: ClusterNode, isReady: @escaping @Sendable () async -> Bool) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/health/live") { _, _ -> HTTPResponse.Status in .ok }
        router.get("/health/ready") { _, _ -> HTTPResponse.Status in
            await isReady() ? .ok : .serviceUnavailable
        }
        router.get("/v1/cluster") { _, _ -> ClusterSnapshot in
            await node.snapshot
        }
        router.get("/metrics") { _, _ -> Response in
            let text = await node.metricsText()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }
}

extension ClusterSnapshot: ResponseEncodable {}
