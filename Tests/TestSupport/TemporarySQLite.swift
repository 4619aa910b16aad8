import Foundation
public import Storage

/// Runs `body` with a fresh, migrated SQLite store in a temporary directory, removed afterwards.
public func withSQLiteStore(_ body: (SQLiteEventStore, String) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("store.sqlite").path
    let store = try await SQLiteEventStore.open(path: path)
    try await store.migrate()
    do {
        try await body(store, path)
    } catch {
        await store.close()
        throw error
    }
    await store.close()
}
