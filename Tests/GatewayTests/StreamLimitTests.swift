import Foundation
import Gateway
import HummingbirdTesting
import TestSupport
import Testing

/// Live streams are capped per caller and per node, and there is no stream for an auction that
/// does not exist — over real sockets, with streams held open.
@Suite(.serialized) struct StreamLimitTests {
    static func openStream(_ port: Int, from address: String, path: String) async throws -> RawConnection {
        let connection = try await RawConnection.open(port: port, from: address)
        connection.send("GET \(path) HTTP/1.1\r\nHost: node\r\nAccept: text/event-stream\r\n\r\n")
        try await eventually("an answer head to \(path)") { connection.text.contains("\r\n\r\n") }
        return connection
    }

    @Test func noStreamForAnAuctionThatDoesNotExist() async throws {
        try await GatewayHarness.run(live: true) { client, _ in
            let port = try #require(client.port)
            let sse = try await Self.openStream(port, from: "127.0.0.4", path: "/v1/auctions/no-such-lot/events")
            #expect(sse.text.hasPrefix("HTTP/1.1 404"))
            #expect(sse.text.contains("auction_not_found"))
            let webSocket = try await RawConnection.open(port: port, from: "127.0.0.4")
            webSocket.send(
                "GET /v1/auctions/no-such-lot/ws HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            try await eventually("the upgrade is answered") { webSocket.text.contains("\r\n\r\n") }
            #expect(!webSocket.text.hasPrefix("HTTP/1.1 101"), "\(webSocket.text.prefix(60))")
            sse.close()
            webSocket.close()
        }
    }

    @Test func streamsAreCappedPerCallerAndPerNode_andSlotsComeBackWhenAStreamEnds() async throws {
        try await GatewayHarness.run(live: true, streams: .init(maximumStreams: 5, maximumStreamsPerCaller: 3)) {
            client, harness in
            let port = try #require(client.port)
            let seller = try await client.signUp("stella", roles: ["seller"])
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-s"), token: seller).status
                    == .created)
            let path = "/v1/auctions/lot-s/events"
            var first: [RawConnection] = []
            for _ in 0..<3 {
                let stream = try await Self.openStream(port, from: "127.0.0.4", path: path)
                #expect(stream.text.hasPrefix("HTTP/1.1 200"))
                first.append(stream)
            }
            let fourth = try await Self.openStream(port, from: "127.0.0.4", path: path)
            #expect(fourth.text.hasPrefix("HTTP/1.1 429"), "per caller: \(fourth.text.prefix(60))")
            #expect(fourth.text.contains("too_many_streams"))
            var second: [RawConnection] = []
            for _ in 0..<2 {
                let stream = try await Self.openStream(port, from: "127.0.0.5", path: path)
                #expect(stream.text.hasPrefix("HTTP/1.1 200"))
                second.append(stream)
            }
            let sixth = try await Self.openStream(port, from: "127.0.0.5", path: path)
            #expect(sixth.text.hasPrefix("HTTP/1.1 503"), "per node: \(sixth.text.prefix(60))")
            #expect(sixth.text.contains("Retry-After"))
            let metrics = String(buffer: try await client.send(.get, "/metrics").body)
            #expect(
                metrics.contains(#"artpay_event_streams_open{transport="sse"} 5.0"# + "\n"),
                "the metric is the limiter's count")
            #expect(metrics.contains(#"artpay_event_streams_open{transport="websocket"} 0.0"# + "\n"))
            // A stream that ends gives its slot back.
            first[0].close()
            try await eventually("a slot is free again") {
                let stream = try await Self.openStream(port, from: "127.0.0.5", path: path)
                defer { stream.close() }
                return stream.text.hasPrefix("HTTP/1.1 200")
            }
            for stream in first + second + [fourth, sixth] { stream.close() }
            _ = harness
        }
    }
}
