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
}
