/// An error of Ferry's wire and record codec: bad gzip, a damaged record, a malformed batch id.
///
/// A struct with an opaque code, so that new codes do not break callers. `message` says what happened and
/// what to do; `code.shortDescription` is stable and safe as a metric label.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable identifier.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable {
            case invalidGzip = "invalid_gzip"
            case truncatedGzip = "truncated_gzip"
            case outputLimitExceeded = "output_limit_exceeded"
            case recordTruncated = "record_truncated"
            case recordUnknownVersion = "record_unknown_version"
            case recordUnknownCodec = "record_unknown_codec"
            case recordLengthMismatch = "record_length_mismatch"
            case recordChecksumMismatch = "record_checksum_mismatch"
            case invalidBatchID = "invalid_batch_id"
            case zlib = "zlib"
        }

        let base: Base

        /// The input is not gzip, or its deflate stream is damaged.
        public static let invalidGzip = Code(base: .invalidGzip)
        /// The gzip input ended inside a member.
        public static let truncatedGzip = Code(base: .truncatedGzip)
        /// Decompressing would produce more bytes than allowed (a gzip bomb, or a limit set too low).
        public static let outputLimitExceeded = Code(base: .outputLimitExceeded)
        /// A stored record is shorter than its header says.
        public static let recordTruncated = Code(base: .recordTruncated)
        /// A stored record has a format version this build does not read.
        public static let recordUnknownVersion = Code(base: .recordUnknownVersion)
        /// A stored record names a payload codec this build does not know.
        public static let recordUnknownCodec = Code(base: .recordUnknownCodec)
        /// A stored record's payload length or decompressed length disagrees with its header.
        public static let recordLengthMismatch = Code(base: .recordLengthMismatch)
        /// A stored record's CRC-32 does not match its bytes: the record is damaged.
        public static let recordChecksumMismatch = Code(base: .recordChecksumMismatch)
        /// A `Ferry-Batch` header value is not `<agent-id>/<first-seq>-<last-seq>`.
        public static let invalidBatchID = Code(base: .invalidBatchID)
        /// zlib itself failed (out of memory, or a library misuse).
        public static let zlib = Code(base: .zlib)

        /// A short, stable name, safe as a metric label.
        public var shortDescription: String { base.rawValue }
        public var description: String { base.rawValue }
    }

    public let code: Code
    /// What happened and what to do, for a human.
    public let message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
