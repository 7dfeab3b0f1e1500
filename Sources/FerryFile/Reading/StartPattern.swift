#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The multiline start pattern: a POSIX extended regular expression (glibc `regcomp`/`regexec`), matched
/// against the bytes of a line without copying them.
///
/// Why POSIX: it matches raw bytes in place (`REG_STARTEND`, no NUL terminator, no `String`), needs no
/// Foundation or ICU, and was the faster of the two candidates on 1M lines (figures in
/// docs/ARCHITECTURE.md, "File input"; `tools/bench/file --matchers`). Syntax: POSIX ERE plus glibc's `\w \W
/// \s \S \b \< \>`; `\d` and `\D`, which ERE lacks but which patterns written for other shippers use
/// everywhere, are rewritten to `[0-9]` and `[^0-9]` outside brackets. Unanchored patterns match anywhere in the
/// line (anchor with `^` to match the start).
///
/// Thread safety: glibc's `regexec` on a compiled pattern is safe from several threads (it locks internally).
package final class StartPattern: @unchecked Sendable {
    /// The pattern as configured.
    package let source: String
    private var compiled = regex_t()

    /// Compiles `pattern`; throws `FileInputError` naming the pattern and glibc's reason when it is invalid.
    package init(_ pattern: String) throws(FileInputError) {
        source = pattern
        let translated = StartPattern.translate(pattern)
        let status = regcomp(&compiled, translated, REG_EXTENDED | REG_NOSUB)
        guard status == 0 else {
            var reason = [CChar](repeating: 0, count: 256)
            regerror(status, &compiled, &reason, reason.count)
            let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw FileInputError(.invalidPattern, "multiline start pattern \(pattern) is not a valid POSIX extended regular expression: \(text); fix the pattern")
        }
    }

    deinit { regfree(&compiled) }

    /// Whether `line` (bytes without the newline) matches.
    package func matches(_ line: UnsafeRawBufferPointer) -> Bool {
        var match = regmatch_t()
        match.rm_so = 0
        match.rm_eo = regoff_t(line.count)
        if let base = line.baseAddress {
            return regexec(&compiled, base.assumingMemoryBound(to: CChar.self), 1, &match, REG_STARTEND) == 0
        }
        // regexec wants a non-null pointer even for an empty line.
        var empty: CChar = 0
        return regexec(&compiled, &empty, 1, &match, REG_STARTEND) == 0
    }

    /// Rewrites `\d`/`\D` outside bracket expressions; everything else is left as written.
    static func translate(_ pattern: String) -> String {
        let chars = Array(pattern)
        let n = chars.count
        var out = ""
        var i = 0
        while i < n {
            let c = chars[i]
            if c == "\\" && i + 1 < n {
                switch chars[i + 1] {
                case "d": out += "[0-9]"
                case "D": out += "[^0-9]"
                default: out.append(c); out.append(chars[i + 1])
                }
                i += 2
            } else if c == "[" {
                // Copy the bracket expression whole: a `]` first (or after `^`) is a member, and `[:digit:]`,
                // `[.x.]`, `[=x=]` end with their own `:]`, `.]`, `=]`.
                var j = i + 1
                if j < n && chars[j] == "^" { j += 1 }
                if j < n && chars[j] == "]" { j += 1 }
                while j < n && chars[j] != "]" {
                    if chars[j] == "[", j + 1 < n, ":.=".contains(chars[j + 1]) {
                        let close = chars[j + 1]
                        var k = j + 2
                        while k + 1 < n && !(chars[k] == close && chars[k + 1] == "]") { k += 1 }
                        j = k + 2
                    } else {
                        j += 1
                    }
                }
                let stop = min(j, n - 1)
                out += String(chars[i...stop])
                i = stop + 1
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }
}
