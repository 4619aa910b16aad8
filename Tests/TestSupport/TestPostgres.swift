import Foundation
public import PostgresNIO
import Storage

/// Where the test PostgreSQL is, from the environment `scripts/test` sets.
public struct TestPostgres: Sendable {
    public let host: String
    public let port: Int
    public let user: String
    public let database: String

    public static func fromEnvironment() throws -> TestPostgres {
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

    public func configuration(database: String) -> PostgresClient.Configuration {
        var config = PostgresClient.Configuration(
            host: host, port: port, username: user, password: nil, database: database, tls: .disable)
        config.options.maximumConnections = 16
        return config
    }

    /// Creates a database of its own for one test; returns its name.
    public func createDatabase() async throws -> String {
        let name = "artpay_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        _ = try await withClient(database: database) { admin in
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        return name
    }

    /// Runs `body` with a client on a database of its own, created for this call.
    public func withFreshDatabase<T: Sendable>(
        _ body: @Sendable (PostgresClient, String) async throws -> T
    ) async throws -> T {
        let name = try await createDatabase()
        return try await withClient(database: name) { try await body($0, name) }
    }

    public func withClient<T: Sendable>(
        database: String, _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        try await PostgresClient.withRunning(configuration(database: database), body)
    }
}

public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
