import BatonCore
import Testing

/// An apps audit: the one line of a failed deploy quoted puma's `from /usr/bin/puma:25:in
/// <main>` and gunicorn's `[ERROR] Reason: Worker failed to boot.`, not the error above them.
@Suite struct FailureOutputTests {
    @Test func theErrorAboveALastLineThatIsNone() {
        let puma = [
            "/usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb:85:in `require': cannot load such file -- missing_gem (LoadError)",
            "\tfrom /usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb:85:in `require'",
            "\tfrom /usr/bin/puma:25:in `<main>'",
        ]
        #expect(
            FailureOutput.summary(puma)
                == " — error: /usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb:85:in `require': cannot load such file -- missing_gem (LoadError) (last output: from /usr/bin/puma:25:in `<main>')"
        )
        let gunicorn = [
            "[2026-12-07 07:30:01 +0000] [17] [ERROR] Exception in worker process", "Traceback (most recent call last):",
            "ModuleNotFoundError: No module named 'missing_module_xyz'", "[2026-12-07 07:30:01 +0000] [17] [INFO] Worker exiting (pid: 17)",
            "[2026-12-07 07:30:01 +0000] [16] [ERROR] Reason: Worker failed to boot.",
        ]
        #expect(FailureOutput.summary(gunicorn)?.hasPrefix(" — error: ModuleNotFoundError: No module named 'missing_module_xyz' (last output: [") == true)
    }

    @Test func theLastLineWhenItIsTheErrorOrNoneIs() {
        #expect(
            FailureOutput.summary(["Traceback (most recent call last):", "RuntimeError: DATABASE_URL is not set"])
                == " — last output: RuntimeError: DATABASE_URL is not set")
        #expect(FailureOutput.summary(["starting", "boom: cannot connect to the database"]) == " — last output: boom: cannot connect to the database")
        #expect(FailureOutput.summary([]) == nil)
        #expect(FailureOutput.summary(["warning: x: y", "done"]) == " — last output: done")
        // A worker that did not fail on its own before ready (a re-audit: SIGKILLed after ready,
        // blamed on a handled `ValueError` it logged at boot).
        let handled = ["ValueError: bad header from 10.0.0.7 (request ignored)", "serving on :18700", "GET /health 200"]
        #expect(FailureOutput.summary(handled, searchable: 0) == " — last output: GET /health 200")
        // Only the lines since ready (a re-audit: a canary's KeyError after ready was lost).
        let canary = ["ValueError: handled at boot", "serving", "KeyError: 'db_url'", "worker exiting"]
        #expect(FailureOutput.summary(canary, searchable: 2) == " — error: KeyError: 'db_url' (last output: worker exiting)")
        #expect(FailureOutput.summary(Array(canary.prefix(2)) + ["worker exiting"], searchable: 1) == " — last output: worker exiting")
    }

    /// An error older than the lines kept (`earlier`, counted back from the last line) is named
    /// when it is among the searchable lines, as one still kept would be.
    @Test func anEarlierErrorOutsideTheLinesKept() {
        let frames = (0..<20).map { "\tfrom /srv/app/frame\($0).rb:1:in `x'" }
        let earlier = FailureOutput.EarlierError(line: "x.rb:1: cannot load such file -- y (LoadError)", linesAgo: 25)
        #expect(
            FailureOutput.summary(frames, earlier: earlier)
                == " — error: x.rb:1: cannot load such file -- y (LoadError) (last output: from /srv/app/frame19.rb:1:in `x')")
        #expect(FailureOutput.summary(frames, searchable: 25, earlier: earlier) == " — last output: \tfrom /srv/app/frame19.rb:1:in `x'")
        #expect(FailureOutput.summary(frames, searchable: 26, earlier: earlier)?.hasPrefix(" — error: x.rb:1") == true)
        // One still kept is found among them; the earlier one is never the last line itself.
        #expect(FailureOutput.summary(["KeyError: 'a'", "exiting"], earlier: earlier) == " — error: KeyError: 'a' (last output: exiting)")
        #expect(FailureOutput.summary(["exiting"], earlier: FailureOutput.EarlierError(line: "KeyError: 'a'", linesAgo: 0)) == " — last output: exiting")
    }
}
