internal import CYaml

/// A YAML node as the configuration loader reads it: every scalar as its text (no tags resolved: the
/// loader parses each value itself, as the key it belongs to says), mappings as ordered pairs, and where
/// each node starts. Made by `YAML.compose` over libyaml's event parser.
///
/// Why not a YAML library: Yams brought full Foundation (its resolver uses `NSRegularExpression`), and with
/// it ICU, into the `ferry` binary (docs/ARCHITECTURE.md, "Footprint"); the loader needs none of what it
/// adds on libyaml.
indirect enum Node {
    case scalar(Scalar)
    case mapping(Mapping)
    case sequence(Items)

    /// Line and column (both from 1) where a node starts.
    struct Mark: Hashable {
        var line: Int
        var column: Int
    }

    struct Scalar {
        var string: String
        var mark: Mark
    }

    /// A mapping's pairs, in the order written (a key given twice is refused by `YAML.compose`).
    struct Mapping: RandomAccessCollection {
        var pairs: [(key: Node, value: Node)]
        var mark: Mark
        var startIndex: Int { pairs.startIndex }
        var endIndex: Int { pairs.endIndex }
        subscript(position: Int) -> (key: Node, value: Node) { pairs[position] }
    }

    struct Items: RandomAccessCollection {
        var nodes: [Node]
        var mark: Mark
        var startIndex: Int { nodes.startIndex }
        var endIndex: Int { nodes.endIndex }
        subscript(position: Int) -> Node { nodes[position] }
    }

    var mark: Mark? {
        switch self {
        case .scalar(let scalar): scalar.mark
        case .mapping(let mapping): mapping.mark
        case .sequence(let items): items.mark
        }
    }

    /// A scalar's text; nil for a mapping or a sequence.
    var string: String? {
        if case .scalar(let scalar) = self { return scalar.string }
        return nil
    }
}

/// A document libyaml could not parse, or one the loader does not take (more than one document, an
/// alias to an anchor not defined before it).
struct YAMLError: Error, CustomStringConvertible {
    var description: String
}

enum YAML {
    /// The one document of `text` as a node tree, nil when it holds none (empty, or comments only).
    /// Anchors and aliases are resolved (an alias is the anchored node again: a tree of shared values, so
    /// an alias bomb costs no memory; the loader reads only the keys it knows).
    static func compose(_ text: String) throws(YAMLError) -> Node? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw YAMLError(description: "libyaml could not allocate a parser") }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return nil }
        return try bytes.withUnsafeMutableBufferPointer { (buffer) throws(YAMLError) -> Node? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var composer = Composer()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { throw Self.parserError(parser, input: buffer) }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { return composer.root }
                try composer.take(event)
            }
        }
    }

    private static func parserError(_ parser: yaml_parser_t, input: UnsafeMutableBufferPointer<UInt8>) -> YAMLError {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        let context = parser.context.map { " " + String(cString: $0) } ?? ""
        var (line, column) = (parser.problem_mark.line + 1, parser.problem_mark.column + 1)
        if parser.error == YAML_READER_ERROR {
            // The reader (bad UTF-8, a control character) gives a byte offset, not a mark.
            let offset = min(parser.problem_offset, input.count)
            let before = input[..<offset]
            line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
            column = offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
        }
        return YAMLError(description: "\(line):\(column): \(problem)\(context)")
    }

    /// Builds the tree from the events, one open mapping or sequence per level.
    private struct Composer {
        private enum Open {
            case mapping(pairs: [(key: Node, value: Node)], key: Node?, mark: Node.Mark, anchor: String?)
            case sequence(items: [Node], mark: Node.Mark, anchor: String?)
        }

        private var open: [Open] = []
        private var anchors: [String: Node] = [:]
        private var documents = 0
        private(set) var root: Node?

        mutating func take(_ event: yaml_event_t) throws(YAMLError) {
            let mark = Node.Mark(line: event.start_mark.line + 1, column: event.start_mark.column + 1)
            switch event.type {
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                guard documents == 1 else {
                    throw YAMLError(description: "\(mark.line):\(mark.column): a second document (---); the configuration is one document")
                }
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
                try add(.scalar(Node.Scalar(string: text, mark: mark)), anchor: Self.text(scalar.anchor))
            case YAML_SEQUENCE_START_EVENT:
                open.append(.sequence(items: [], mark: mark, anchor: Self.text(event.data.sequence_start.anchor)))
            case YAML_MAPPING_START_EVENT:
                open.append(.mapping(pairs: [], key: nil, mark: mark, anchor: Self.text(event.data.mapping_start.anchor)))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                switch open.removeLast() {
                case .sequence(let items, let start, let anchor): try add(.sequence(Node.Items(nodes: items, mark: start)), anchor: anchor)
                case .mapping(let pairs, _, let start, let anchor): try add(.mapping(Node.Mapping(pairs: pairs, mark: start)), anchor: anchor)
                }
            case YAML_ALIAS_EVENT:
                let name = Self.text(event.data.alias.anchor) ?? ""
                guard let node = anchors[name] else {
                    throw YAMLError(description: "\(mark.line):\(mark.column): alias *\(name) names no anchor defined before it")
                }
                try add(node, anchor: nil)
            default:
                break  // stream start, document end, no event
            }
        }

        private mutating func add(_ node: Node, anchor: String?) throws(YAMLError) {
            if let anchor { anchors[anchor] = node }
            guard let last = open.popLast() else {
                root = node
                return
            }
            switch last {
            case .sequence(var items, let mark, let anchor):
                items.append(node)
                open.append(.sequence(items: items, mark: mark, anchor: anchor))
            case .mapping(var pairs, let key, let mark, let anchor):
                if let key {
                    pairs.append((key, node))
                    open.append(.mapping(pairs: pairs, key: nil, mark: mark, anchor: anchor))
                } else {
                    // A key given twice would leave one of the two settings unread without a word.
                    if let text = node.string, let first = pairs.first(where: { $0.key.string == text }), let at = node.mark {
                        throw YAMLError(description: "\(at.line):\(at.column): key \(text) is given twice in this mapping (first on line \(first.key.mark?.line ?? 0)); keep one")
                    }
                    open.append(.mapping(pairs: pairs, key: node, mark: mark, anchor: anchor))
                }
            }
        }

        private static func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: $0) }
        }
    }
}
