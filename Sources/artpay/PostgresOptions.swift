import ArgumentParser
import Foundation
import PostgresNIO

/// Where PostgreSQL is. Flags win over the standard libpq environment variables (PGHOST, PGPORT,
/// PGUSER, PGPASSWORD, PGDATABASE), which win over the defaults.
struct PostgresOptions: ParsableArguments {
    @Option(name: .customLong("pg-host"), help: "PostgreSQL host (env PGHOST, default 127.0.0.1).")
    var host: String?
    @Option(name: .customLong("pg-port"), help: "PostgreSQL port (env PGPORT, default 5432).")
    var port: Int?
    @Option(name: .customLong("pg-user"), help: "PostgreSQL user (env PGUSER, default postgres).")
    var user: String?
    @Option(name: .customLong("pg-database"), help: "PostgreSQL database (env PGDATABASE, default postgres).")
    var database: String?

    func configuration(maximumConnections: Int) -> PostgresClient.Configuration {
        let env = ProcessInfo.processInfo.environment
        var config = PostgresClient.Configuration(
            host: host ?? env["PGHOST"] ?? "127.0.0.1",
            port: port ?? env["PGPORT"].flatMap(Int.init) ?? 5432,
            username: user ?? env["PGUSER"] ?? "postgres",
            password: env["PGPASSWORD"],
            database: database ?? env["PGDATABASE"] ?? "postgres",
            tls: .disable)
        config.options.maximumConnections = maximumConnections
        config.options.minimumConnections = 0
        return config
    }

    /// Runs `body` on a database made for it (`prefix` and a random suffix, on the server these
    /// options name) with room for `maximumConnections`, and drops the database afterwards, also when
    /// `body` throws: a benchmark leaves nothing behind.
    func withFreshDatabase<Result: Sendable>(
        prefix: String, maximumConnections: Int, _ body: @escaping @Sendable (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let base = configuration(maximumConnections: 4)
        let name = prefix + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        var database = base
        database.database = name
        database.options.maximumConnections = maximumConnections
        _ = try await PostgresClient.withRunning(base) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await PostgresClient.withRunning(database, body))
        } catch {
            result = .failure(error)
        }
        _ = try? await PostgresClient.withRunning(base) { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name)"))
        }
        return try result.get()
    }
}
