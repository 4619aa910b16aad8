import AuctionCore
import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
import Storage
import TestSupport
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

/// What both backends are: the event log, users, webhooks, the archive.
typealias StoreUnderTest = EventStore & UserStore & WebhookStore & ArchiveStore

/// Runs `body` with a migrated, empty store of `backend`, plus a second, independent store on the
/// same database (separate connections; its fencing as given) and raw SQL access.
func withStore(
    _ backend: Backend, otherFencing: Fencing = .enforced,
    _ body:
        @Sendable (_ store: any StoreUnderTest, _ other: any StoreUnderTest, _ raw: RawSQL) async throws
        -> Void
) async throws {
    switch backend {
    case .postgres:
        let pg = try TestPostgres.fromEnvironment()
        try await pg.withFreshDatabase { client, name in
            try await pg.withClient(database: name) { otherClient in
                let store = PostgresEventStore(client: client)
                let other = PostgresEventStore(client: otherClient, fencing: otherFencing)
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
        let other = try await SQLiteEventStore.open(path: path, fencing: otherFencing)
        try await store.migrate()
        let rawConnection = try await SQLiteConnection.open(storage: .file(path: path))
        _ = try await rawConnection.query("PRAGMA busy_timeout = 10000")
        let raw = RawSQL { sql in _ = try await rawConnection.query(sql) }
        do {
            try await body(store, other, raw)
        } catch {
            await store.close()
            await other.close()
            try? await rawConnection.close()
            throw error
        }
        await store.close()
        await other.close()
        try await rawConnection.close()
    }
}
