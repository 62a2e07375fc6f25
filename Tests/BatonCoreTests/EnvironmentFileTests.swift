import BatonCore
import Testing

/// Parses `text` as `/etc/baton/shop.env`, flattening the pairs for comparison.
private func parse(_ text: String) throws(ConfigError) -> [String] {
    try EnvironmentFile.parse(text, path: "/etc/baton/shop.env").map { "\($0.0)=\($0.1)" }
}

/// The one-line error `text` is rejected with, or nil if it parses.
private func failure(_ text: String) -> String? {
    do {
        _ = try parse(text)
        return nil
    } catch {
        return error.description
    }
}

@Suite("EnvironmentFile")
struct EnvironmentFileTests {
    @Test("a NUL byte is an error with its line: it would cut the value short at execve")
    func nulByte() {
        #expect(failure("A=1\nB=x\u{0}y\n") == "/etc/baton/shop.env:2: contains a NUL byte (a config is text)")
    }

    @Test func plainAssignmentsCommentsAndBlankLines() throws {
        let text = """
            # database
            DATABASE_URL=postgres://db/shop
            ; another comment style

              export SECRET_KEY_BASE = abc123  
            EMPTY=
            URL=http://x/#fragment
            """
        #expect(
            try parse(text) == [
                "DATABASE_URL=postgres://db/shop", "SECRET_KEY_BASE=abc123", "EMPTY=", "URL=http://x/#fragment",
            ])
    }

    @Test func quotedValues() throws {
        let text = #"""
            SINGLE='it is $HOME \n'
            DOUBLE="say \"hi\"\\ back\nnow \$x"
            SPACES="  padded  "
            MULTI="line one
            line two"
            UNKNOWN="a\qb"
            """#
        #expect(
            try parse(text) == [
                #"SINGLE=it is $HOME \n"#, "DOUBLE=say \"hi\"\\ back\\nnow $x", "SPACES=  padded  ",
                "MULTI=line one\nline two", #"UNKNOWN=a\qb"#,
            ])
    }

    @Test func unquotedEscapesAndContinuations() throws {
        let text = "A=one\\\ntwo\nB=x\\ \nC=a\\#b\r\nD=crlf\r\n"
        #expect(try parse(text) == ["A=onetwo", "B=x ", "C=a#b", "D=crlf"])
    }

    @Test func duplicatesAreKeptInOrder() throws {
        #expect(try parse("A=1\nB=2\nA=3\n") == ["A=1", "B=2", "A=3"])
    }

    @Test func errorsNameTheFileAndLine() {
        #expect(failure("A=1\n\nJUSTAWORD\n") == #"/etc/baton/shop.env:3: expected KEY=VALUE, got "JUSTAWORD""#)
        #expect(failure("1ABC=x\n") == #"/etc/baton/shop.env:1: invalid variable name "1ABC""#)
        #expect(failure("A=1\nMY-VAR=x\n") == #"/etc/baton/shop.env:2: invalid variable name "MY-VAR""#)
        #expect(failure("=x\n") == #"/etc/baton/shop.env:1: invalid variable name """#)
        #expect(failure("A=1\nB=\"open\nstill open\n") == "/etc/baton/shop.env:2: unterminated double-quoted value")
        #expect(failure("B='open\n") == "/etc/baton/shop.env:1: unterminated single-quoted value")
    }

    /// A names audit ran one file through systemd 252 and through baton: `"a\nb"`, `"x" # c`
    /// and `'a'"b"c` read otherwise (a newline; `x`; refused). As systemd's parser now: a
    /// value is quoted parts then the rest of the line, and `\n` in double quotes stays.
    @Test func asSystemdReadsThem() throws {
        let text = #"""
            T_N="one\ntwo"
            T_J="x" # c
            T_C='a'"b"c
            T_S="a"   "b"
            # a comment that goes on \
            T_HIDDEN=1
            T_E="\$x\`y\z"
            """#
        #expect(try parse(text) == [#"T_N=one\ntwo"#, "T_J=x# c", "T_C=abc", "T_S=ab", #"T_E=$x`y\z"#])
        // CR and LF are each a line end, as systemd's NEWLINE (a re-audit: with CRLF, a
        // backslash before it joined or hid the next line; systemd 252 gives A24=a and sets A26).
        #expect(try parse("A24=a\\\r\nA25=b\r\n# c2 \\\r\nA26=hidden2\r\n") == ["A24=a", "A25=b", "A26=hidden2"])
        // In double quotes only LF continues a line; spaces before a continuation stay (a
        // re-audit, against systemd 252: `q1\`, CR, LF, `q2`; `"two "`).
        #expect(try parse("E=\"q1\\\r\nq2\"\nF=\"q1\\\rq2\"\nB=two \\\r\nC=x \\\n\n") == ["E=q1\\\r\nq2", "F=q1\\\rq2", "B=two ", "C=x "])
        #expect(failure("A=1\r\nB=2\r\nJUSTAWORD\r\n") == #"/etc/baton/shop.env:3: expected KEY=VALUE, got "JUSTAWORD""#)
    }
}
