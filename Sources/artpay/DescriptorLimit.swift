#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The process's limit on open file descriptors (`RLIMIT_NOFILE`). Every HTTP connection, cluster
/// link and store connection takes one; a node that runs out can accept no one (nor reach its
/// store), so it raises its soft limit to the hard one at start and caps HTTP connections below it.
enum DescriptorLimit {
    /// Raises the soft limit to the hard limit (as far as the system allows) and returns the soft
    /// limit in effect afterwards.
    static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
