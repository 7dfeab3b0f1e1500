import FerryPipeline
package import FerryIngest
package import FerrySyslog

/// `input.syslog`: syslog over TCP (octet counting or newlines, per frame; TLS, RFC 5425, optional) and UDP.
package struct SyslogInputSettings: Sendable, Hashable, HasSyslogLimits {
    /// The TCP listener (TLS when `tls` is set), nil for none.
    package var tcp: AgentConfiguration.Address?
    /// The UDP listener (never TLS), nil for none.
    package var udp: AgentConfiguration.Address?
    /// The same block as `input.http.tls`; nil is clear text.
    package var tls: IngestConfiguration.TLS?
    /// An explicit `tls: false`: clear text on a non-loopback address, on purpose.
    package var allowPlaintext: Bool
    package var limits: SyslogLimits

    /// TCP and UDP on 127.0.0.1:5514 by default, or both on `address` (what `--syslog` sets).
    package init(address: AgentConfiguration.Address = .init(host: "127.0.0.1", port: 5514)) {
        tcp = address
        udp = address
        tls = nil
        allowPlaintext = false
        limits = SyslogLimits()
    }

    /// The server's configuration. Refuses a listener on a non-loopback address without TLS unless
    /// `tls: false` was given (UDP has no TLS: a non-loopback UDP listener always needs `tls: false`).
    func serverConfiguration(name: String) throws -> SyslogServerConfiguration {
        for (address, transport) in [(tcp, "tcp"), (udp, "udp")] {
            guard let address, !isLoopback(address.host) else { continue }
            let clear = transport == "udp" || tls == nil
            if clear && !allowPlaintext {
                throw ConfigurationError("input.\(name).\(transport) \(address) is not loopback and \(transport == "udp" ? "UDP has no TLS" : "has no TLS"); configure input.\(name).tls (certificate and key, or keystore) for TCP, or set tls: false to take syslog in clear text on purpose")
            }
        }
        var configuration = SyslogServerConfiguration(name: name, tcp: tcp.map(ListenAddress.init), udp: udp.map(ListenAddress.init),
                                                      tls: try tls.map { tls throws in try IngestServer.makeTLS(tls, path: "input.\(name).tls") })
        configuration.limits = limits
        return configuration
    }
}

/// `input.relp`: RELP (rsyslog's `omrelp`), each message answered after its commit.
package struct RELPInputSettings: Sendable, Hashable, HasSyslogLimits {
    package var address: AgentConfiguration.Address
    package var tls: IngestConfiguration.TLS?
    package var allowPlaintext: Bool
    package var limits: SyslogLimits

    /// 127.0.0.1:2514 by default, or `address` (what `--relp` sets).
    package init(address: AgentConfiguration.Address = .init(host: "127.0.0.1", port: 2514)) {
        self.address = address
        tls = nil
        allowPlaintext = false
        limits = SyslogLimits()
    }

    /// The server's configuration; refuses a non-loopback address without TLS unless `tls: false` was given.
    func serverConfiguration(name: String) throws -> RELPServerConfiguration {
        if tls == nil, !allowPlaintext, !isLoopback(address.host) {
            throw ConfigurationError("input.\(name).address \(address) is not loopback and has no TLS; configure input.\(name).tls (certificate and key, or keystore), or set tls: false to take RELP in clear text on purpose")
        }
        var configuration = RELPServerConfiguration(name: name, address: ListenAddress(address),
                                                    tls: try tls.map { tls throws in try IngestServer.makeTLS(tls, path: "input.\(name).tls") })
        configuration.limits = limits
        return configuration
    }
}

private func isLoopback(_ host: String) -> Bool { isLoopbackHost(host) }

extension ListenAddress {
    init(_ address: AgentConfiguration.Address) {
        self.init(host: address.host, port: address.port)
    }
}

extension AgentConfiguration {
    /// The syslog input's settings, nil when it is off. Setting it replaces the configured one, or adds it.
    package var syslog: SyslogInputSettings? {
        get {
            for input in inputs { if case .syslog(let syslog) = input.source { return syslog } }
            return nil
        }
        set { replaceInput(newValue.map { .syslog($0) }) { if case .syslog = $0 { true } else { false } } }
    }

    /// The RELP input's settings, nil when it is off. Setting it replaces the configured one, or adds it.
    package var relp: RELPInputSettings? {
        get {
            for input in inputs { if case .relp(let relp) = input.source { return relp } }
            return nil
        }
        set { replaceInput(newValue.map { .relp($0) }) { if case .relp = $0 { true } else { false } } }
    }

    private mutating func replaceInput(_ source: InputConfiguration.Source?, matching: (InputConfiguration.Source) -> Bool) {
        let index = inputs.firstIndex { matching($0.source) }
        switch (index, source) {
        case (let i?, let source?): inputs[i].source = source
        case (let i?, nil): inputs.remove(at: i)
        case (nil, let source?): inputs.append(InputConfiguration(source))
        case (nil, nil): break
        }
    }
}

extension ConfigurationLoader {
    static let syslogLimitKeys: Set<String> = ["max_message_size", "max_connections", "idle_timeout"]

    /// `input.syslog`: `address` (TCP and UDP), or `tcp` and/or `udp`; `tls`; limits; stamp keys.
    static func syslogInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> InputConfiguration {
        let path = "input.syslog"
        let s = try reader.mapping(node, path: path, keys: stampKeys.union(syslogLimitKeys).union(["address", "tcp", "udp", "tls"]))
        var c = SyslogInputSettings()
        if s["address"] != nil || s["tcp"] != nil || s["udp"] != nil {
            let both = try s["address"].map { n throws(ConfigurationError) in try reader.address(n, path: "\(path).address") }
            c.tcp = try s["tcp"].map { n throws(ConfigurationError) in try reader.address(n, path: "\(path).tcp") } ?? (s["udp"] == nil ? both : nil)
            c.udp = try s["udp"].map { n throws(ConfigurationError) in try reader.address(n, path: "\(path).udp") } ?? (s["tcp"] == nil ? both : nil)
            if both != nil, s["tcp"] != nil || s["udp"] != nil {
                throw ConfigurationError("\(reader.location(node)): \(path) has address and tcp/udp; give address (TCP and UDP on one port) or tcp and udp")
            }
        }
        if let tls = s["tls"] {
            c.tls = try listenerTLS(tls, path: "\(path).tls", reader: reader)
            c.allowPlaintext = c.tls == nil
        }
        c.limits = try syslogLimits(s, path: path, reader: reader)
        return InputConfiguration(.syslog(c), stamp: try stamp(s, path: path, reader: reader))
    }

    /// `input.relp`: `address`, `tls`, limits, stamp keys.
    static func relpInput(_ node: Node, reader: Reader) throws(ConfigurationError) -> InputConfiguration {
        let path = "input.relp"
        let r = try reader.mapping(node, path: path, keys: stampKeys.union(syslogLimitKeys).union(["address", "tls"]))
        var c = RELPInputSettings()
        if let address = r["address"] { c.address = try reader.address(address, path: "\(path).address") }
        if let tls = r["tls"] {
            c.tls = try listenerTLS(tls, path: "\(path).tls", reader: reader)
            c.allowPlaintext = c.tls == nil
        }
        c.limits = try syslogLimits(r, path: path, reader: reader)
        return InputConfiguration(.relp(c), stamp: try stamp(r, path: path, reader: reader))
    }

    static func syslogLimits(_ m: [String: Node], path: String, reader: Reader) throws(ConfigurationError) -> SyslogLimits {
        var limits = SyslogLimits()
        if let v = m["max_message_size"] { limits.maxMessageSize = try reader.bytes(v, path: "\(path).max_message_size") }
        if let v = m["max_connections"] { limits.maxConnections = try reader.positiveInt(v, path: "\(path).max_connections") }
        if let v = m["idle_timeout"] { limits.idleTimeout = .seconds(try reader.seconds(v, path: "\(path).idle_timeout")) }
        return limits
    }
}

extension SyslogLimits {
    /// The limits as `check-config` prints them.
    var yaml: String {
        "max_message_size: \(maxMessageSize), max_connections: \(maxConnections), idle_timeout: \(idleTimeout.map { "\($0.components.seconds)s" } ?? "off")"
    }
}

extension AgentConfiguration {
    /// The `tls` lines of a listening input for `check-config`, the keystore password redacted; `tls: false`
    /// only when it was given (it allows clear text on a non-loopback address).
    func listenerTLS(_ tls: IngestConfiguration.TLS?, allowPlaintext: Bool, quote: (String) -> String) -> [String] {
        guard let tls else { return allowPlaintext ? ["    tls: false"] : [] }
        var lines = ["    tls:"]
        switch tls.identity {
        case .pem(let certificate, let key):
            lines.append("      certificate: \(quote(certificate))")
            lines.append("      key: \(quote(key))")
        case .pkcs12(let path, _):
            lines.append("      keystore: \(quote(path))")
            lines.append("      keystore_password: \"<redacted>\"")
        }
        lines.append("      client_auth: \(tls.clientAuth.rawValue)")
        if !tls.certificateAuthorities.isEmpty {
            lines.append("      certificate_authorities: [\(tls.certificateAuthorities.map(quote).joined(separator: ", "))]")
        }
        return lines
    }
}

/// The settings of an input with the syslog listeners' limits (`input.syslog`, `input.relp`), which SIGHUP
/// applies on their own.
protocol HasSyslogLimits {
    var limits: SyslogLimits { get set }
}
