/// Base64 (RFC 4648 §4, standard alphabet, with padding) without Foundation: binary values in events, such
/// as a journal field that is not text.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Appends the base64 text of `bytes` to `out` (4 bytes for every 3, the last group padded with `=`).
    public static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
        alphabet.withUnsafeBufferPointer { table in
            var index = 0
            while index + 3 <= bytes.count {
                let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
                out.append(table[Int(group >> 18 & 0x3F)])
                out.append(table[Int(group >> 12 & 0x3F)])
                out.append(table[Int(group >> 6 & 0x3F)])
                out.append(table[Int(group & 0x3F)])
                index += 3
            }
            let rest = bytes.count - index
            guard rest > 0 else { return }
            let group = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out.append(table[Int(group >> 18 & 0x3F)])
            out.append(table[Int(group >> 12 & 0x3F)])
            out.append(rest == 2 ? table[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
    }

    /// The base64 text of `bytes`.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        Array(bytes).withUnsafeBytes { append($0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }
}
