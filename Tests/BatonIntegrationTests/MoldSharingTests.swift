import BatonTestSupport
import Testing

extension Integration {
    /// What the Python mold does before it forks so that its workers keep sharing its pages,
    /// seen from inside a real worker forked by a real baton.
    @Suite("mold sharing (Python adapter)", .serialized)
    struct MoldSharingTests {
        /// A WSGI app that records every module loaded from its own import on (in the mold),
        /// with the pid that loaded it, and answers with the modules this worker loaded itself
        /// the size of its garbage collector's permanent generation, and whether waitress's
        /// request parser runs specialized code ("n/a" before Python 3.11).
        static let app = """
            import dis
            import gc
            import os
            import sys

            from waitress.parser import HTTPRequestParser

            _loaded = []

            def _specialized():
                code = HTTPRequestParser.received.__code__
                try:
                    adaptive = [i.opname for i in dis.get_instructions(code, adaptive=True)]
                except TypeError:
                    return "n/a"
                return "yes" if adaptive != [i.opname for i in dis.get_instructions(code)] else "no"

            def _audit(event, args):
                if event == "import":
                    _loaded.append((os.getpid(), args[0]))

            sys.addaudithook(_audit)

            def application(environ, start_response):
                mine = sorted({name for pid, name in _loaded if pid == os.getpid()})
                body = ("pid=%d frozen=%d specialized=%s loaded=%s\\n" % (
                    os.getpid(), gc.get_freeze_count(), _specialized(), ",".join(mine) or "-")).encode()
                start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
                return [body]
            """

        /// One worker forked from the mold, answered twice (its first request and a later one).
        static func answers(tag: String) throws -> [String] {
            let check = try TestProcess.run(["/usr/bin/env", "python3", "-c", "import waitress"], timeout: .seconds(30))
            guard check.code == 0 else { throw HarnessError("python3 has no waitress: run scripts/install-deps (\(check.stderr))") }
            let baton = try BatonHarness(
                workers: 1, command: ["python3", pythonMoldAdapter, "sharingapp:application"], extraApp: "mode = \"mold\"",
                sections: SecondIntegration.MoldTests.sections, tag: tag, beforeStart: { TestPaths.write($0 + "/releases/r1/sharingapp.py", app) })
            defer { baton.stop() }
            var bodies: [String] = []
            for _ in 0..<2 {
                let response = try #require(HTTP.get(port: baton.port, path: "/"))
                #expect(response.status == 200)
                bodies.append(response.body)
            }
            return bodies
        }

        @Test("a forked worker loads no module of its own: the mold loaded what waitress and the adapter use (the idna codec too)")
        func workerLoadsNothing() throws {
            for body in try Self.answers(tag: "share1") {
                // Each module a worker loads is about 1 MiB (encodings.idna with stringprep and
                // unicodedata) or a few pages of objects it could have shared with the mold.
                #expect(SecondIntegration.MoldTests.field(body, "loaded") == "-", "\(body)")
            }
        }

        @Test("the mold freezes its objects before forking (gc.freeze): the worker's collector leaves the shared ones alone")
        func workerInheritsFrozenObjects() throws {
            let body = try #require(try Self.answers(tag: "share2").last)
            let frozen = try #require(SecondIntegration.MoldTests.field(body, "frozen").flatMap { Int($0) }, "\(body)")
            #expect(frozen > 1000, "\(body)")
        }

        @Test("the mold runs waitress's request path before forking: a worker's first request already runs specialized code")
        func workerStartsWarm() throws {
            // The first answer: the worker's parser has parsed one request, too few for Python to
            // specialize it (it does so after a few runs); specialized, it was in the mold.
            let body = try #require(try Self.answers(tag: "share3").first)
            let specialized = SecondIntegration.MoldTests.field(body, "specialized")
            #expect(specialized == "yes" || specialized == "n/a", "\(body)")
        }
    }
}
