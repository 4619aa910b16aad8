import AuctionCore
import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
import Storage
import Testing

/// The two backends every conformance test runs against.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case postgres, sqlite
    var testDescription: String { rawValue }
}

/// Raw SQL on the same database as a store, for planting rows the store would never write.
struct RawSQL: Sendable {
    let execute: @Sendable (String) async throws -> Void
}

/// Where the test PostgreSQL is, from the environment `scripts/test` sets.
struct TestPostgres {
    let host: String
    let port: Int
    let user: String
    let database: String

    static func fromEnvironment() throws -> TestPostgres {
        let env = ProcessInfo.processInfo.environment
        guard let host = env["ARTPAY_TEST_POSTGRES_HOST"], let port = env["ARTPAY_TEST_POSTGRES_PORT"].flatMap(Int.init)
        else {
            throw HarnessError(
                "ARTPAY_TEST_POSTGRES_HOST/PORT are not set: run the tests with scripts/test, which starts a "
                    + "throwaway PostgreSQL and sets them")
        }
        return TestPostgres(
            host: host, port: port, user: env["ARTPAY_TEST_POSTGRES_USER"] ?? "postgres",
            database: env["ARTPAY_TEST_POSTGRES_DATABASE"] ?? "postgres")
    }

    func configuration(database: String) -> PostgresClient.Configuration {
        var config = PostgresClient.Configuration(
            host: host, port: port, username: user, password: nil, database: database, tls: .disable)
        config.options.maximumConnections = 16
        return config
    }

    /// Runs `body` with a client on a database of its own, created for this call.
    func withFreshDatabase<T: Sendable>(
        _ body: @Sendable (PostgresClient, String) async throws -> T
    ) async throws -> T {
        let name = "artpay_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        _ = try await withClient(database: database) { admin in
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        return try await withClient(database: name) { try await body($0, name) }
    }

    func withClient<T: Sendable>(
        database: String, _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: configuration(database: database))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a migrated, empty store of `backend`, plus a second, independent store on the
/// same database (separate connections) and raw SQL access.
func withStore(
    _ backend: Backend,
    _ body: @Sendable (_ store: any EventStore, _ other: any EventStore, _ raw: RawSQL) async throws -> Void
) async throws {
    switch backend {
    case .postgres:
        let pg = try TestPostgres.fromEnvironment()
        try await pg.withFreshDatabase { client, name in
            try await pg.withClient(database: name) { otherClient in
                let store = PostgresEventStore(client: client)
                let other = PostgresEventStore(client: otherClient)
                try await store.migrate()
                let raw = RawSQL { sql in try await client.query(PostgresQuery(unsafeSQL: sql)) }
                try await body(store, other, raw)
            }
        }
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("store.sqlite").path
        let store = try await SQLiteEventStore.open(path: path)
        let other = try await SQLiteEventStore.open(path: path)
        try await store.migrate()
        let rawConnection = try await SQLiteConnection.open(storage: .file(path: path))
        _ = try await rawConnection.query("PRAGMA busy_timeout = 10000")
        let raw = RawSQL { sql in _ = try await rawConnection.query(sql) }
        do {
            try await body(store, other, raw)
        } catch {
            await store.close(); await other.close(); try? await rawConnection.close()
            throw error
        }
        await store.close(); await other.close(); try await rawConnection.close()
    }
}
