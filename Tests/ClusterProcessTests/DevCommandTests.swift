import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `artpay dev` as a terminal runs it: in a process group of its own, Ctrl-C sent to the whole
/// group. After one of its nodes was killed with kill -9, it must still exit and leave no process
/// behind (it used to wait forever on the killed child).
@Suite(.serialized) struct DevCommandTests {
    @Test(.timeLimit(.minutes(3))) func ctrlC_afterANodeWasKilled_stopsEverything() async throws {
        let binary = try NodeProcess.binary
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-dev-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let clusterPort = try await freePort(on: "127.0.0.1")
        let httpPort = try await freePort(on: "127.0.0.1")
        let output = directory.appendingPathComponent("dev.out").path
        let dev = try spawnInOwnGroup(
            binary,
            [
                "dev", "--data-directory", directory.path, "--cluster-port", "\(clusterPort)", "--http-port",
                "\(httpPort)", "--minutes", "5",
            ], output: output)
        defer { kill(-dev, SIGKILL) }  // only if the test failed half-way: the group is this test's own

        // The welcome names each node's pid.
        var nodes: [pid_t] = []
        try await eventually("artpay dev prints its nodes", timeout: .seconds(120)) {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            nodes = text.split(separator: "\n").compactMap { line in
                guard line.contains(": http://127.0.0."), let range = line.range(of: "pid ") else { return nil }
                return pid_t(line[range.upperBound...].prefix { $0.isNumber })
            }
            return nodes.count == 3
        }
        #expect(nodes.allSatisfy { $0 > 0 && kill($0, 0) == 0 })
        kill(nodes[1], SIGKILL)
        try await eventually("the killed node is gone") { !isAlive(nodes[1]) }
        // As a person would: Ctrl-C once the status line shows the node down.
        try await eventually("the status line shows the node down", timeout: .seconds(30)) {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("node-2 DOWN")
        }

        kill(-dev, SIGINT)  // Ctrl-C: the terminal signals the whole foreground group
        try await eventually("artpay dev exits", timeout: .seconds(60)) { hasExited(dev) }
        for node in nodes {
            try await eventually("node \(node) is gone, reaped", timeout: .seconds(20)) { !isAlive(node) }
        }
    }

    /// Starts `executable` as the leader of a new process group, output to `output`.
    private func spawnInOwnGroup(_ executable: String, _ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw HarnessError("cannot start \(executable): \(String(cString: strerror(result)))") }
        return pid
    }

    /// Whether our child `pid` has ended (reaping it).
    private func hasExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    /// Whether `pid` exists and is not a zombie (a grandchild: `artpay dev` must have reaped it).
    private func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        // The state follows the parenthesised command name.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != nil && state != "Z" && state != "X"
    }
}
