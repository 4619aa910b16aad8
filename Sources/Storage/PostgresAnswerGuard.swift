import NIOCore
import PostgresNIO
import Synchronization

/// Runs store calls on a leased connection so that a call can never wait for an answer that will
/// not come because its connection closed.
///
/// Why (postgres-nio 1.33.2, found under PostgreSQL restarts in the chaos runs): when the server
/// closes an idle connection (`57P01` on `pg_ctl restart -m fast`), NIO tears the pipeline down in
/// a later event-loop turn, and the pool learns of the close only from `closeFuture`, after that.
/// A query leased that connection meanwhile is written with no write promise
/// (`PostgresClient.swift` and `PostgresConnection.query`); the write reaches an empty pipeline, is
/// failed without anyone to tell, and the call waits for ever. About one PostgreSQL restart in
/// five left one auction's append hanging until the 5 s store deadline — 5 s in which that
/// auction answered nobody.
///
/// So: a connection that is already closed is not used (nothing was sent, the call is retried once
/// on another), and a call still waiting `grace` after its connection closed fails with
/// ``ConnectionClosedWithoutAnswer`` — an unknown outcome, like a timeout. postgres-nio fails every
/// query it knew about before `closeFuture` completes, so only a lost one is cut off. One
/// `closeFuture` callback per connection (not per call: connections live long), dropped on close.
final class PostgresAnswerGuard: Sendable {
    /// The leased connection was closed already; nothing was sent.
    struct ConnectionClosedBeforeSend: Error {}

    private struct Watched {
        var waiting: [UInt64: @Sendable (any Error) -> Void] = [:]
    }

    private struct State {
        var connections: [ObjectIdentifier: Watched] = [:]
        var nextToken: UInt64 = 0
    }

    private let state = Mutex(State())
    let grace: TimeAmount

    init(grace: TimeAmount = .milliseconds(200)) {
        self.grace = grace
    }

    /// `body` on a live connection of `client`, answered or failed — never left waiting on a
    /// closed connection.
    func run<T: Sendable>(
        on client: PostgresClient, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        for attempt in 1...2 {
            do {
                return try await client.withConnection { connection in
                    guard !connection.isClosed else { throw ConnectionClosedBeforeSend() }
                    return try await firstAnswer({ try await body(connection) }) { fail in
                        let token = self.watch(connection, fail: fail)
                        return { self.unwatch(connection, token) }
                    }
                }
            } catch is ConnectionClosedBeforeSend where attempt == 1 {
                continue
            }
        }
        throw ConnectionClosedBeforeSend()
    }

    /// Calls `fail` `grace` after `connection` closes, unless unwatched first.
    private func watch(_ connection: PostgresConnection, fail: @escaping @Sendable (any Error) -> Void) -> UInt64 {
        let id = ObjectIdentifier(connection)
        let (token, first) = state.withLock { state in
            state.nextToken += 1
            let first = state.connections[id] == nil
            state.connections[id, default: Watched()].waiting[state.nextToken] = fail
            return (state.nextToken, first)
        }
        if first {
            let grace = self.grace
            connection.closeFuture.whenComplete { _ in
                // The connection is kept alive until then, so its identifier is not reused meanwhile.
                connection.eventLoop.scheduleTask(in: grace) { [connection] in
                    withExtendedLifetime(connection) { self.closed(id) }
                }
            }
        }
        return token
    }

    private func unwatch(_ connection: PostgresConnection, _ token: UInt64) {
        _ = state.withLock { $0.connections[ObjectIdentifier(connection)]?.waiting.removeValue(forKey: token) }
    }

    private func closed(_ id: ObjectIdentifier) {
        let waiting = state.withLock { $0.connections.removeValue(forKey: id)?.waiting.values.map { $0 } ?? [] }
        for fail in waiting { fail(ConnectionClosedWithoutAnswer()) }
    }
}

/// A store call's connection closed and the call got no answer: its request was most likely never
/// sent, but it may have been — an unknown outcome.
public struct ConnectionClosedWithoutAnswer: Error, CustomStringConvertible {
    public var description: String { "the connection closed without an answer" }
}
