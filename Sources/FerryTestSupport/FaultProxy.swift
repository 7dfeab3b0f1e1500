import Foundation
import Synchronization

/// A TCP proxy on loopback that injects network faults on command, between a client and an upstream
/// server also on loopback. One thread per direction per connection; every loop ends when the proxy
/// stops, and every blocking call has a timeout.
public final class FaultProxy: Sendable {
    public enum Mode: Sendable, Hashable, CaseIterable {
        /// Forward both ways.
        case pass
        /// Reset each new connection at once (as a refused or crashed listener looks to a client).
        case refuse
        /// Read the start of the request, then reset; the upstream sees nothing.
        case resetMidRequest
        /// Forward the request whole; when the upstream starts to answer, reset the client instead:
        /// the upstream stored it, the client thinks it failed (the duplicate case).
        case resetAfterRequest
        /// Accept, then neither read nor write anything.
        case stall
        /// Accept, read and discard everything, never answer.
        case blackhole
        /// Forward the request; forward the answer one byte every 20 ms.
        case drip
    }

    public let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state = Mutex<(mode: Mode, stopped: Bool, connections: Int, sockets: Set<Int32>)>((.pass, false, 0, []))

    public init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 128) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public var mode: Mode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }

    /// Connections accepted so far.
    public var connections: Int { state.withLock { $0.connections } }

    /// Stops accepting and ends every connection.
    public func stop() {
        let sockets = state.withLock { state in
            state.stopped = true
            return state.sockets
        }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func track(_ fd: Int32) { state.withLock { _ = $0.sockets.insert(fd) } }

    private func finish(_ fd: Int32) {
        let owned = state.withLock { $0.sockets.remove(fd) != nil }
        if owned { close(fd) }
    }

    /// Closes with a TCP reset (SO_LINGER 0) rather than a FIN.
    private func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        finish(fd)
    }

    private func acceptLoop() {
        while !stopped {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if stopped { return }
                continue
            }
            let mode = state.withLock { state -> Mode in
                state.connections += 1
                return state.mode
            }
            setTimeouts(client)
            track(client)
            let thread = Thread { [self] in serve(client, mode: mode) }
            thread.start()
        }
    }

    private func setTimeouts(_ fd: Int32) {
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)  // so loops notice stop() and mode changes
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    private func serve(_ client: Int32, mode: Mode) {
        switch mode {
        case .refuse:
            reset(client)
            return
        case .stall:
            // Hold the connection, silent, until stopped or the mode changes.
            while !stopped && self.mode == .stall { usleep(50_000) }  // holding is the fault under test
            finish(client)
            return
        case .blackhole:
            var sink = [UInt8](repeating: 0, count: 65536)
            while !stopped && self.mode == .blackhole {
                let n = recv(client, &sink, sink.count, 0)
                if n == 0 { break }
            }
            finish(client)
            return
        case .resetMidRequest:
            var buffer = [UInt8](repeating: 0, count: 16)
            _ = recv(client, &buffer, buffer.count, 0)
            reset(client)
            return
        case .pass, .resetAfterRequest, .drip:
            break
        }
        guard let upstream = connectUpstream() else {
            reset(client)
            return
        }
        track(upstream)
        // Neither pump closes a socket: a closed descriptor number can be reused by the next accept
        // while the other pump still writes to it. Both are closed here, once both pumps have ended.
        let otherDone = DispatchSemaphore(value: 0)
        let toUpstream = Thread { [self] in
            _ = pump(from: client, to: upstream, drip: false, stopOnData: false)
            otherDone.signal()
        }
        toUpstream.start()
        let answered = pump(from: upstream, to: client, drip: mode == .drip, stopOnData: mode == .resetAfterRequest)
        shutdown(client, Int32(SHUT_RD))
        shutdown(upstream, Int32(SHUT_RDWR))
        otherDone.wait()
        if answered { reset(client) } else { finish(client) }
        finish(upstream)
    }

    private func connectUpstream() -> Int32? {
        guard let fd = connectLoopback(port: upstreamPort) else { return nil }
        setTimeouts(fd)
        return fd
    }

    /// Copies bytes until the source ends. With `stopOnData`, stops at the first byte instead and returns
    /// true (the upstream answered: the request was received whole).
    private func pump(from source: Int32, to destination: Int32, drip: Bool, stopOnData: Bool) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopped {
            let n = recv(source, &buffer, buffer.count, 0)
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            if stopOnData { return true }
            if drip {
                for i in 0..<n where !stopped {
                    if buffer.withUnsafeBytes({ send(destination, $0.baseAddress! + i, 1, Int32(MSG_NOSIGNAL)) }) != 1 { break }
                    usleep(20_000)  // the slowness under test
                }
            } else if buffer.withUnsafeBytes({ send(destination, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }) != n {
                break
            }
        }
        shutdown(destination, Int32(SHUT_WR))
        return false
    }
}
