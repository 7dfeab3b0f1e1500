import Foundation

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed).
public func freePort() -> Int {
    guard let (fd, port) = bindLoopbackPort() else { return 0 }
    close(fd)
    return port
}

/// A TCP socket bound to a free port on 127.0.0.1 (port 0, read back), listening when `listening`; the
/// caller closes it. While it is open, nothing else can take the port: bound only, connections to it are
/// refused; listening, the port is in use. Nil when no socket could be bound.
public func bindLoopbackPort(listening: Bool = false) -> (fd: Int32, port: Int)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && (!listening || listen(fd, 1) == 0) && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else {
        close(fd)
        return nil
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// CPU time (user + system) this process has used so far, in seconds.
public func cpuSeconds() -> Double {
    cpuSeconds(of: RUSAGE_SELF)
}

/// CPU time (user + system) of this process's children that have ended and been waited for (a peer
/// program run with `run`, such as wrk), in seconds.
public func childrenCPUSeconds() -> Double {
    cpuSeconds(of: RUSAGE_CHILDREN)
}

private func cpuSeconds(of who: __rusage_who) -> Double {
    var usage = rusage()
    getrusage(who.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// The whole machine's CPU time since boot, from the first line of `/proc/stat`, in clock ticks: what a
/// benchmark compares before and after a run to see how much of the cores was left idle, or taken by the
/// hypervisor (steal), while it ran.
public struct MachineCPU: Sendable {
    /// Ticks spent running anything (user, nice, system, interrupts).
    public var busy: Double = 0
    /// Ticks idle, waiting for I/O included.
    public var idle: Double = 0
    /// Ticks the hypervisor gave to another guest.
    public var steal: Double = 0

    public init() {}

    /// Now; all zero if `/proc/stat` cannot be read.
    public static func now() -> MachineCPU {
        var cpu = MachineCPU()
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return cpu }
        // user nice system idle iowait irq softirq steal
        let v = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard v.count == 8 else { return cpu }
        cpu.busy = v[0] + v[1] + v[2] + v[5] + v[6]
        cpu.idle = v[3] + v[4]
        cpu.steal = v[7]
        return cpu
    }

    /// The share of all ticks between `earlier` and `self` that went to each: (busy, idle, steal), adding to 1.
    public func shares(since earlier: MachineCPU) -> (busy: Double, idle: Double, steal: Double) {
        let busy = self.busy - earlier.busy, idle = self.idle - earlier.idle, steal = self.steal - earlier.steal
        let total = busy + idle + steal
        guard total > 0 else { return (0, 0, 0) }
        return (busy / total, idle / total, steal / total)
    }
}

/// A TCP connection to 127.0.0.1:`port`: its descriptor, or nil (nothing left open) when refused.
public func connectLoopback(port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        close(fd)
        return nil
    }
    return fd
}
