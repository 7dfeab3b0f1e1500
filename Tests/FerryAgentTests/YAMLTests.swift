import Testing

@testable import FerryAgent

/// The configuration's YAML reader (`YAML.compose` over libyaml): the shapes a configuration uses, where
/// each node is, and the documents it refuses.
@Suite struct YAMLTests {
    /// A compact, comparable form of a tree: scalars as they are, mappings as `{k: v, ...}`, lists as `[...]`.
    static func shape(_ node: Node?) -> String {
        switch node {
        case nil: "nil"
        case .scalar(let scalar)?: scalar.string
        case .mapping(let mapping)?: "{" + mapping.map { "\(shape($0.key)): \(shape($0.value))" }.joined(separator: ", ") + "}"
        case .sequence(let items)?: "[" + items.map { shape($0) }.joined(separator: ", ") + "]"
        }
    }

    @Test(arguments: [
        ("", "nil"),
        ("# only a comment\n", "nil"),
        ("a: 1\nb: [x, 'y z', \"q\\tr\"]\n", "{a: 1, b: [x, y z, q\tr]}"),
        ("list:\n  - one\n  - two: 2\n    three: 3\n", "{list: [one, {two: 2, three: 3}]}"),
        ("text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n", "{text: line one\nline two\n, folded: a b\n}"),
        ("base: &b {host: h, port: 1}\nother: *b\n", "{base: {host: h, port: 1}, other: {host: h, port: 1}}"),
        ("tagged: !!str 9800\nempty:\nnull_word: null\n", "{tagged: 9800, empty: , null_word: null}"),
        ("---\nk: v\n...\n", "{k: v}"),
    ] as [(String, String)])
    func composesWhatItReads(_ text: String, _ expected: String) throws {
        #expect(Self.shape(try YAML.compose(text)) == expected)
    }

    @Test func marksAreLinesAndColumnsFromOne() throws {
        let root = try #require(try YAML.compose("queue:\n  path: /var/lib/ferry\n  max_bytes: 1GiB\n"))
        guard case .mapping(let top) = root, case .mapping(let queue) = top[0].value else {
            Issue.record("not a mapping of a mapping: \(Self.shape(root))")
            return
        }
        #expect(top[0].key.mark == Node.Mark(line: 1, column: 1))
        #expect(queue[1].key.mark == Node.Mark(line: 3, column: 3))
        #expect(queue[1].value.mark == Node.Mark(line: 3, column: 14))
    }

    @Test(arguments: [
        ("a: [1, 2\n", "1:"),  // unclosed flow sequence: libyaml names where it gave up
        ("a: b\n  c: d\n", "2:"),
        ("a: 1\n---\nb: 2\n", "a second document"),
        ("a: *nowhere\n", "names no anchor"),
        ("a: \"unterminated\n", "2:"),
        ("input:\n  http: {}\nqueue: {}\ninput:\n  syslog: {}\n", "4:1: key input is given twice in this mapping (first on line 1)"),
        ("a: {b: 1, b: 2}\n", "1:11: key b is given twice"),
        ("a: b\u{07}\n", "1:5: control characters are not allowed"),
    ] as [(String, String)])
    func refusesWithWhere(_ text: String, _ expected: String) {
        #expect(throws: YAMLError.self) { try YAML.compose(text) }
        do {
            _ = try YAML.compose(text)
        } catch {
            #expect(error.description.contains(expected), "\(error)")
        }
    }

    /// A "billion laughs" document: nine levels of nine aliases each. Aliases share the anchored node, so it
    /// composes without expanding it.
    @Test func anAliasBombIsNotExpanded() throws {
        var text = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            text += "l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        let root = try #require(try YAML.compose(text))
        guard case .mapping(let top) = root, case .sequence(let last) = top[9].value else {
            Issue.record("unexpected shape")
            return
        }
        #expect(top.count == 10 && last.count == 9)
    }
}
