import Dispatch
import Foundation
import Synchronization

/// Every child process `artpay bench http` starts (baseline servers, redis-server, wrk), by pid:
/// each is ended by pid when it is no longer needed, and all of them — plus whatever was registered
/// with `onCleanUp` (the node cluster) — on failure or Ctrl-C.
final class BenchChildren: Sendable {
    private let running = Mutex<[pid_t: String]>([:])
    private let cleanUps = Mutex<[@Sendable () -> Void]>([])

    func start(_ name: String, _ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        let pid = try Spawn.start(executable, arguments, logPath: log)
        running.withLock { $0[pid] = name }
        return pid
    }

    /// Whether `pid` has ended (reaped; no longer tracked).
    func hasExited(_ pid: pid_t) -> Bool {
        guard Spawn.hasExited(pid) else { return false }
        running.withLock { _ = $0.removeValue(forKey: pid) }
        return true
    }

    /// Waits until every one of `pids` has ended, at most until `deadline`; returns those still running.
    func waitForExit(_ pids: [pid_t], until deadline: ContinuousClock.Instant) async -> [pid_t] {
        var left = pids
        while !left.isEmpty, ContinuousClock.now < deadline {
            left.removeAll { hasExited($0) }
            if left.isEmpty { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return left
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; returns when each has ended.
    func stop(_ pids: [pid_t], grace: Duration = .seconds(10)) async {
        for pid in pids where running.withLock({ $0[pid] != nil }) { kill(pid, SIGTERM) }
        let left = await waitForExit(pids, until: ContinuousClock.now.advanced(by: grace))
        for pid in left {
            kill(pid, SIGKILL)
            Spawn.waitForExit(pid)
            running.withLock { _ = $0.removeValue(forKey: pid) }
        }
    }

    func onCleanUp(_ cleanUp: @escaping @Sendable () -> Void) {
        cleanUps.withLock { $0.append(cleanUp) }
    }

    /// For an interrupt or a failed run: synchronous, kills everything by pid.
    func killAll() {
        for cleanUp in cleanUps.withLock({ $0 }) { cleanUp() }
        let pids = running.withLock { running in
            defer { running.removeAll() }
            return Array(running.keys)
        }
        for pid in pids {
            kill(pid, SIGKILL)
            Spawn.waitForExit(pid)
        }
    }

    /// On SIGINT or SIGTERM: kills every child, then exits 130. Returns the sources (keep them).
    func killAllOnInterrupt() -> [any DispatchSourceSignal] {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for source in sources {
            source.setEventHandler { [self] in
                print("\nbench http: interrupted; stopping every process it started")
                killAll()
                Foundation.exit(130)
            }
            source.resume()
        }
        return sources
    }
}

/// CPU time of processes and of the whole machine, from /proc, to say where a load test's CPU went.
enum CPUTime {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// User + system CPU seconds `pid` has used (0 when it is gone).
    static func process(_ pid: pid_t) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // Fields after "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / ticksPerSecond
    }

    /// CPU seconds used by each process whose command name is `name`.
    static func processes(named name: String) -> [pid_t: Double] {
        var result: [pid_t: Double] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                comm.trimmingCharacters(in: .whitespacesAndNewlines) == name
            else { continue }
            result[pid] = process(pid)
        }
        return result
    }

    /// CPU seconds the whole machine has been busy (all cores), from /proc/stat.
    static func machineBusy() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first
        else { return 0 }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 8 else { return 0 }
        // user nice system idle iowait irq softirq steal: busy is user, nice, system, irq and softirq
        // (steal is time the hypervisor gave to someone else).
        return (values[0] + values[1] + values[2] + values[5] + values[6]) / ticksPerSecond
    }

    /// CPU seconds used by children of this process that have ended and been reaped.
    static func reapedChildren() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_CHILDREN.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

/// CPU times at one moment, to say where a load test's CPU went: the servers under test, the
/// PostgreSQL processes, children reaped meanwhile (the wrks), this process, and everything else
/// on the machine (e.g. a build running next to the benchmark).
struct CPUSample {
    var at: ContinuousClock.Instant
    var servers: Double
    var postgres: [pid_t: Double]
    var reaped: Double
    var harness: Double
    var machine: Double

    static func take(servers: [pid_t]) -> CPUSample {
        CPUSample(
            at: .now, servers: servers.map(CPUTime.process).reduce(0, +),
            postgres: CPUTime.processes(named: "postgres"),
            reaped: CPUTime.reapedChildren(), harness: CPUTime.process(getpid()), machine: CPUTime.machineBusy())
    }

    /// Percent of one core each used from `before` to this sample.
    func usage(since before: CPUSample) -> CPUUsage {
        let wall = Swift.max((at - before.at).benchSeconds, 1e-3)
        func percent(_ seconds: Double) -> Double { Swift.max(0, seconds / wall * 100) }
        let postgresSeconds = postgres.reduce(0) { $0 + $1.value - (before.postgres[$1.key] ?? 0) }
        var usage = CPUUsage(
            servers: percent(servers - before.servers), postgres: percent(postgresSeconds),
            wrk: percent(reaped - before.reaped), harness: percent(harness - before.harness), other: 0)
        usage.other = Swift.max(
            0, percent(machine - before.machine) - usage.servers - usage.postgres - usage.wrk - usage.harness)
        return usage
    }
}

struct CPUUsage {
    var servers: Double
    var postgres: Double
    var wrk: Double
    var harness: Double
    var other: Double

    /// "nodes 106%, PostgreSQL 40%, wrk 14%, other 3%" (parts named by the caller; nil = left out).
    func text(servers serversName: String?, wrk wrkName: String?, harness harnessName: String?) -> String {
        var parts: [String] = []
        if let serversName { parts.append(String(format: "%@ %.0f%%", serversName, servers)) }
        parts.append(String(format: "PostgreSQL %.0f%%", postgres))
        if let wrkName { parts.append(String(format: "%@ %.0f%%", wrkName, wrk)) }
        if let harnessName { parts.append(String(format: "%@ %.0f%%", harnessName, harness)) }
        parts.append(String(format: "other %.0f%%", other))
        return parts.joined(separator: ", ")
    }
}

/// Loopback ports for the processes the chaos runs and benchmarks start.
enum LocalNetwork {
    /// A port nothing listens on at `host` now.
    static func freePort(_ host: String) throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, host, &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw ChaosError("no free port on \(host)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(socket, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls `condition` every 100 ms until it holds; throws once `seconds` have passed.
    static func waitUntil(_ what: String, seconds: Int, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(seconds))
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError("timed out after \(seconds) s waiting until \(what)")
    }
}
