import Foundation

/// Child processes started with posix_spawn and reaped with waitpid by pid — never through
/// Foundation's `Process`, whose SIGCHLD bookkeeping loses track of a child once another one was
/// reaped by pid (seen here: `waitUntilExit` spinning forever after a kill -9).
enum Spawn {
    /// Starts `executable` with `arguments`, output appended to `logPath` (or discarded).
    static func start(_ executable: String, _ arguments: [String], logPath: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let target = logPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 1, target, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard result == 0 else { throw ChaosError("cannot start \(executable): \(String(cString: strerror(result)))") }
        return pid
    }

    /// Makes the child close every descriptor above standard error. Why: `posix_spawn` hands a child
    /// every descriptor not marked close-on-exec — this process's HTTP client connections, database
    /// connections and files — so a child holds sockets it does not own open, and a child that sizes
    /// a table by its own descriptors (wrk's event loop: 10 + 3 per connection) fails to connect
    /// once the parent holds a hundred connections. glibc's `addclosefrom_np` (2.34+) when present;
    /// otherwise a close for each descriptor open now (one that closes meanwhile is ignored).
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let closeFrom = unsafeBitCast(symbol, to: CloseFrom.self)
            if closeFrom(&actions, 3) == 0 { return }
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in open.compactMap(Int32.init) where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }

    /// Runs `executable` to its end; returns its exit status (blocking the calling thread).
    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> Int32 {
        let pid = try start(executable, arguments)
        return waitForExit(pid)
    }

    /// Blocks until `pid` ends; its exit status (128 + signal when signalled).
    @discardableResult
    static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return exitStatus(status)
    }

    /// Whether `pid` has ended (reaping it if so), without blocking.
    static func hasExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    private static func exitStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
