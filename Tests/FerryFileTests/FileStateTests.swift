@testable import FerryFile
import Testing

@Suite struct FileStateTests {
    static let sample = FileState(
        id: FileID(device: 2049, inode: 1_234_567), fingerprint: Array(repeating: 0x41, count: 1024),
        position: FilePosition(offset: 987_654_321, skipping: true), window: Array("tail of the last line\n".utf8),
        name: "/var/log/app.log", path: "/var/log/app.log.1", size: 1 << 33, lastSeen: 1_715_680_000_123,
        bootID: "bcac4464-e834-4af7-8af2-b1539ee567cc", gone: true, presumedCopy: false)

    @Test func aStateSurvivesTheRoundTrip() throws {
        for state in [FileStateTests.sample,
                      FileState(id: FileID(device: 0, inode: 0), fingerprint: [], position: .start, window: [], name: "", path: "",
                                size: 0, lastSeen: 0, bootID: "", presumedCopy: true)] {
            #expect(try FileState(decoding: state.encoded, key: "k") == state)
        }
    }

    @Test func keysNameTheInputDeviceAndInode() {
        #expect(String(decoding: FileState.key(input: "apps", id: FileID(device: 2049, inode: 77)), as: UTF8.self) == "file/apps/2049/77")
        #expect(FileState.key(input: "apps", id: FileID(device: 1, inode: 2)).starts(with: FileState.keyPrefix(input: "apps")))
    }

    @Test func aDamagedValueIsRefusedWithAClearError() {
        let good = FileStateTests.sample.encoded
        for index in [1, 10, 30, good.count / 2, good.count - 1] {
            var bad = good
            bad[index] ^= 0x10
            #expect {
                try FileState(decoding: bad, key: "file/apps/2049/1234567")
            } throws: { error in
                let error = error as! FileInputError
                return error.code == .damagedPosition && error.message.contains("file/apps/2049/1234567") && error.message.contains("damaged")
            }
        }
        for cut in [0, 3, 20, good.count - 1] {
            #expect(throws: FileInputError.self) { try FileState(decoding: good.prefix(cut), key: "k") }
        }
    }

    @Test func aValueFromANewerFormatIsRefusedAsSuch() {
        var newer = FileStateTests.sample.encoded
        newer[0] = 2
        #expect {
            try FileState(decoding: newer, key: "k")
        } throws: { error in
            (error as! FileInputError).code == .unknownPositionVersion
        }
    }
}
