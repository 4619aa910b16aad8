import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@testable import ArtPayClient

/// The project's client: event streams parsed however the bytes arrive, and calls and streams that
/// end when the task awaiting them is cancelled. The chaos runner cancels its pollers and watchers
/// at the end of every run; with Foundation's URLSession on Linux such a cancellation could
/// deadlock (swift-corelibs-foundation #5412) and hung a CI run for its whole budget.
@Suite struct EventStreamClientTests {
    /// A count shared by tasks and route handlers.
    private final class Count: Sendable {
        private let value = Atomic<Int>(0)
        @discardableResult func add(_ delta: Int = 1) -> Int { value.add(delta, ordering: .relaxed).newValue }
        var current: Int { value.load(ordering: .relaxed) }
    }

    @Test func events_areTheSame_howeverTheBytesAreSplit() {
        let text =
            "id: 1\nevent: bid\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\ndata: ünïcode\n\nid: 3\nevent: closed\n"
        var whole = ServerSentEventParser()
        let expected = whole.consume(Array(text.utf8))
        #expect(
            expected == [
                ServerSentEvent(id: "1", type: "bid", data: "{\"a\":1}"),
                ServerSentEvent(id: "2", type: "message", data: "ünïcode"),
            ], "the comment is no event; the third is not complete yet")
        #expect(whole.consume(Array("\n".utf8)) == [ServerSentEvent(id: "3", type: "closed", data: "")])

        var bytewise = ServerSentEventParser()
        let split = Array(text.utf8).flatMap { bytewise.consume([$0]) }
        #expect(split == expected, "one byte at a time, including inside a multi-byte character")
    }

    @Test func callsAndStreams_endWhenTheirTaskIsCancelled() async throws {
        let router = Router()
        router.get("/fast") { _, _ in "ok" }
        // Answers only once the test is done with it.
        let release = Count()
        router.get("/slow") { _, _ -> String in
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while release.current == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            return "late"
        }
        let openStreams = Count()
        router.get("/v1/auctions/lot/events") { _, _ -> Response in
            let body = ResponseBody { writer in
                openStreams.add()
                defer { openStreams.add(-1) }
                var seq = 0
                // Until the client goes (a write fails), and never longer than a minute: a stream
                // left open must not hold the server's shutdown.
                let deadline = ContinuousClock.now.advanced(by: .seconds(60))
                while ContinuousClock.now < deadline {
                    seq += 1
                    try await writer.write(ByteBuffer(string: "id: \(seq)\ndata: tick\n\n"))
                    try await Task.sleep(for: .milliseconds(50))
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: body)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"

            // Cancelled at every moment of a call's life, over and over: every task ends.
            let ended = Count()
            var tasks: [Task<Void, Never>] = []
            for index in 0..<200 {
                let task = Task {
                    _ = try? await APIClient.send("GET", base + "/fast", timeout: 10)
                    ended.add()
                }
                tasks.append(task)
                if index % 4 != 0 { try await Task.sleep(for: .microseconds(index % 7 * 300)) }
                task.cancel()
            }
            let slow = Task {
                _ = try? await APIClient.send("GET", base + "/slow", timeout: 120)
                ended.add()
            }
            try await Task.sleep(for: .milliseconds(100))
            slow.cancel()
            try await poll("every cancelled call ends", within: .seconds(60), state: { "\(ended.current) ended" }) {
                ended.current == tasks.count + 1
            }
            release.add()

            // Many open streams to one host leave room for calls to it (a pool of 8 per host did not).
            let followers = (0..<24).map { _ in
                Task { for await _ in EventStreamClient.follow("lot", after: 0, nodes: [base]) {} }
            }
            try await poll("24 streams are open", within: .seconds(60), state: { "\(openStreams.current) open" }) {
                openStreams.current == 24
            }
            let answer = try await APIClient.send("GET", base + "/fast", timeout: 5)
            #expect(answer.status == 200 && answer.body == Data("ok".utf8))
            for follower in followers { follower.cancel() }
            try await poll("the streams are closed", within: .seconds(60), state: { "\(openStreams.current) open" }) {
                openStreams.current == 0
            }

            // A stream that would never end by itself: its consumer stops, the request goes.
            let seen = Count()
            let consumerEnded = Count()
            let consumer = Task {
                for await (event, _) in EventStreamClient.follow("lot", after: 0, nodes: [base]) {
                    #expect(event.seq == Int64(seen.add()), "in order, once")
                }
                consumerEnded.add()
            }
            try await poll("the stream delivers", within: .seconds(60)) { seen.current >= 10 }
            consumer.cancel()
            try await poll("the consumer ends", within: .seconds(60)) { consumerEnded.current == 1 }
            try await poll(
                "the server's stream is closed", within: .seconds(60), state: { "\(openStreams.current) open" }
            ) {
                openStreams.current == 0
            }
        }
    }

    private func poll(
        _ what: String, within limit: Duration, state: () -> String = { "" }, _ condition: () -> Bool
    ) async throws {
        let started = ContinuousClock.now
        let deadline = started.advanced(by: limit)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("not within \(limit): \(what) (\(state()))")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
