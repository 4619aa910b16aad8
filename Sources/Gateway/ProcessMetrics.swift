import Foundation
import Prometheus
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The process's own figures, under the names Prometheus' client libraries give them
/// (`process_*`), read from `/proc` at each scrape: resident memory, CPU seconds, open and maximum
/// file descriptors, start time. An operator needs them next to the node's own series — a node's
/// memory growing with the bids it has seen, a restart (the start time changes: the flapping alert),
/// descriptors running out under many connections. Elsewhere than Linux they stay absent.
final class ProcessMetrics: Sendable {
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    /// A counter advanced by what `/proc` says was spent since the last scrape.
    private let cpuSeconds: Counter
    private let cpuSecondsCounted = Mutex(0.0)
    private let openDescriptors: Gauge
    private let maximumDescriptors: Gauge
    private let startTime: Gauge

    init(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ unit: String, _ help: String) -> Gauge {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(namespace: "process", metricName: name, unitName: unit, helpText: help)
            )
        }
        residentMemory = gauge("resident_memory", "bytes", "Resident memory size in bytes.")
        virtualMemory = gauge("virtual_memory", "bytes", "Virtual memory size in bytes.")
        cpuSeconds = registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "process", metricName: "cpu_seconds", unitName: "total",
                helpText: "Total user and system CPU time spent in seconds."))
        openDescriptors = gauge("open", "fds", "Number of open file descriptors.")
        maximumDescriptors = gauge("max", "fds", "Maximum number of open file descriptors.")
        startTime = gauge("start_time", "seconds", "Start time of the process since unix epoch in seconds.")
    }

    /// Reads `/proc` and sets the gauges; figures it cannot read keep their last value.
    func update() {
        #if os(Linux)
            if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
                let fields = Self.fieldsAfterCommand(stat)
            {
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
                // Fields 14 and 15 (utime, stime), 22 (starttime, ticks after boot), 23 (vsize),
                // 24 (rss, pages); the list starts at field 3.
                if let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 {
                    let total = (user + system) / ticks
                    let grown = cpuSecondsCounted.withLock { counted -> Double in
                        defer { counted = max(counted, total) }
                        return total - counted
                    }
                    if grown > 0 { cpuSeconds.increment(by: grown) }
                }
                if let virtual = Double(fields[20]) { virtualMemory.set(virtual) }
                if let pages = Double(fields[21]) { residentMemory.set(pages * pageSize) }
                if let started = Double(fields[19]), let boot = Self.bootTime(), ticks > 0 {
                    startTime.set(boot + started / ticks)
                }
            }
            if let open = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
                openDescriptors.set(Double(open.count))
            }
            var limit = rlimit()
            if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maximumDescriptors.set(Double(limit.rlim_cur)) }
        #endif
    }

    /// The fields of `/proc/self/stat` after the command name, which is in parentheses and may
    /// itself hold spaces and parentheses; nil when there are too few.
    static func fieldsAfterCommand(_ stat: String) -> [Substring]? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 21 ? fields : nil
    }

    /// The boot time (`btime` in `/proc/stat`), seconds since 1970.
    private static func bootTime() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
