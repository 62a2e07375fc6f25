import BatonSystem
import BatonTestSupport
import Glibc

/// The app every contender serves: `Benchmarks/apps/benchapp.py` (WSGI) or
/// `Benchmarks/apps/config.ru` (Rack), holding `memoryMiB` of touched memory
/// per worker and sleeping `bootDelay` before it can serve.
struct AppVariant: Codable, Sendable {
    /// "instant" or "slow".
    var name: String
    /// Seconds before a worker can serve.
    var bootDelay: Double
    /// Touched MiB per worker.
    var memoryMiB: Int
    /// KiB leaked per request (memory-recycling scenario).
    var growKiB: Int = 0

    static let instant = AppVariant(name: "instant", bootDelay: 0, memoryMiB: 50)
    static let slow = AppVariant(name: "slow", bootDelay: 2, memoryMiB: 50)

    /// The environment the app reads.
    var environment: [String: String] {
        ["BENCH_BOOT_DELAY": fixed(bootDelay, 1), "BENCH_APP_MB": "\(memoryMiB)", "BENCH_GROW_KB": "\(growKiB)"]
    }
}

/// Who serves the app: baton over single-worker servers, or a peer's own master.
enum Contender: String, Codable, CaseIterable, Sendable {
    case batonGunicorn = "baton+gunicorn"
    case batonPuma = "baton+puma"
    case batonDemo = "baton+demo-worker"
    /// baton's mold mode with the Ruby adapter (adapters/ruby/baton-mold): puma single mode in forked workers.
    case batonPumaMold = "baton+puma(mold)"
    /// baton's mold mode with the Python adapter (adapters/python/baton_mold.py, waitress).
    case batonPythonMold = "baton+python(mold)"
    /// The mold rows with refork: a worker warmed by `RunningContender.reforkAfterRequests`
    /// requests becomes the next mold, and every slot is rolled onto it, before the steady window.
    case batonPumaMoldRefork = "baton+puma(mold,refork)"
    case batonPythonMoldRefork = "baton+python(mold,refork)"
    /// The Python mold row with the adapter file named by `BENCH_PYTHON_MOLD_BASELINE` (say an
    /// earlier revision of baton_mold.py), to measure an adapter change against its baseline in
    /// one run; only with that variable set.
    case batonPythonMoldBaseline = "baton+python(mold,baseline)"
    case gunicorn
    /// gunicorn --preload: the app loaded once in the master, workers forked from it.
    case gunicornPreload = "gunicorn preload"
    case uwsgi
    case puma
    /// puma cluster with preload_app!.
    case pumaPreload = "puma preload"

    var isBaton: Bool { rawValue.hasPrefix("baton") }
    /// baton's mold mode: the mold is baton's child too, and holds the app.
    var isMold: Bool { rawValue.contains("(mold") }
    /// A mold row with `[mold] refork_after_requests` set.
    var isRefork: Bool { rawValue.hasSuffix(",refork)") }

    /// What restarting every worker means for it.
    var trigger: String {
        switch self {
        case .batonGunicorn, .batonPuma, .batonDemo, .batonPumaMold, .batonPythonMold, .batonPumaMoldRefork, .batonPythonMoldRefork, .batonPythonMoldBaseline:
            "baton deploy (surge, then replace --wait)"
        case .gunicorn, .gunicornPreload: "SIGHUP"
        case .uwsgi: "chain reload (master FIFO 'c')"
        case .puma: "phased restart (SIGUSR1)"
        // puma refuses a phased restart with preload_app! and restarts the whole cluster instead.
        case .pumaPreload: "SIGUSR1 (puma: no phased restart with preload_app!, a full restart)"
        }
    }
}

/// Where the tools live (gunicorn runs under the python3 on PATH, uWSGI's
/// python3 plugin embeds Debian's /usr/bin/python3; the app has no
/// dependencies, so both import it from the release folder).
enum Tools {
    static let appsDirectory = "Benchmarks/apps"
    static var python: String { which("python3") ?? "/usr/bin/python3" }
    static var puma: String { which("puma") ?? "/usr/bin/puma" }
    static var uwsgi: String { which("uwsgi") ?? "/usr/bin/uwsgi" }
    /// A mold adapter of this repository (the bench runs from the repository's root).
    static func adapter(_ relative: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let cwd = getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "."
        return cwd + "/adapters/" + relative
    }
    /// Whether puma can send READY=1 (Debian's ruby-sd-notify).
    static let pumaNotifies: Bool = (try? TestProcess.run(["/usr/bin/ruby", "-e", "require 'sd_notify'"], timeout: .seconds(20)).code) == 0

    static func which(_ name: String) -> String? {
        let path = environmentValue("PATH") ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
            // pyenv's shim re-execs; resolve to the real interpreter once.
            if dir.hasSuffix("/shims"), name == "python3",
                let real = try? TestProcess.run(["\(dir)/\(name)", "-c", "import sys; print(sys.executable)"]),
                real.code == 0
            {
                return real.stdout.split(separator: "\n").first.map(String.init)
            }
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// Copies the apps into a release folder.
    static func populate(_ directory: String) throws {
        for file in ["benchapp.py", "config.ru", "gunicorn_ready.py"] {
            let r = try TestProcess.run(["/bin/cp", "\(appsDirectory)/\(file)", "\(directory)/\(file)"], timeout: .seconds(10))
            guard r.code == 0 else { throw HarnessError("cp \(file) to \(directory): \(r.stderr)") }
        }
    }
}

/// A running contender: its supervisor process, port, and how to restart its workers.
final class RunningContender {
    let contender: Contender
    let workers: Int
    let port: UInt16
    /// The supervisor (baton, or the peer's master).
    let master: TestProcess
    let baton: BatonHarness?
    /// The workers serving once baton was ready (a refork promotes one of them).
    private(set) var initialWorkers: Set<pid_t> = []
    private let scratch: String?
    private let fifo: String?
    private var deploys: [TestProcess] = []
    private var releaseNumber = 1

    /// Starts `contender` with `workers` workers of `app`; returns once all serve (or throws).
    /// `memory` adds a `[memory]` section for baton; `extraArgs` go to the peer's command line.
    init(_ contender: Contender, app: AppVariant, workers: Int, memory: String = "", extraArgs: [String] = []) throws {
        self.contender = contender
        self.workers = workers
        let bootTimeout = Int(app.bootDelay * 2 + 30 + Double(workers) / 2)
        switch contender {
        case .batonGunicorn, .batonPuma, .batonDemo, .batonPumaMold, .batonPythonMold, .batonPumaMoldRefork, .batonPythonMoldRefork, .batonPythonMoldBaseline:
            let command: [String]
            var pumaDirectory: String?
            var readiness = "mode = \"notify\""
            var appLines = ""
            var appEnvironment = app.environment
            switch contender {
            case .batonPumaMold, .batonPumaMoldRefork:
                // The same puma settings as the single-mode rows (threads 2, 2, queue_requests false,
                // force_shutdown_after), through the adapter's environment knobs.
                appLines = "mode = \"mold\"\n"
                command = ["/usr/bin/ruby", Tools.adapter("ruby/baton-mold"), "config.ru"]
                appEnvironment.merge([
                    "PUMA_MIN_THREADS": "2", "PUMA_MAX_THREADS": "2", "PUMA_QUEUE_REQUESTS": "false",
                    "PUMA_FORCE_SHUTDOWN_AFTER": "\(Self.drainSeconds)",
                ]) { $1 }
            case .batonPythonMold, .batonPythonMoldRefork, .batonPythonMoldBaseline:
                appLines = "mode = \"mold\"\n"
                let adapter = contender == .batonPythonMoldBaseline ? environmentValue("BENCH_PYTHON_MOLD_BASELINE") : nil
                command = [Tools.python, adapter ?? Tools.adapter("python/baton_mold.py"), "benchapp:application"]
            case .batonGunicorn:
                // --preload: gunicorn sends READY=1 only after the app loaded (see the README's readiness table).
                // BENCH_GUNICORN_READY=worker: READY=1 from the worker once it accepts, not from the
                // master before it forks (apps/gunicorn_ready.py; an A/B in Benchmarks/README.md found
                // no restart-window p99 gained by it).
                let hooks = environmentValue("BENCH_GUNICORN_READY") == "worker" ? ["-c", "gunicorn_ready.py"] : []
                command =
                    [
                        Tools.python, "-m", "gunicorn", "--preload", "-w", "1", "-k", "gthread", "--threads", "2", "--graceful-timeout",
                        "\(Self.drainSeconds)",
                    ] + hooks + ["benchapp:app"]
            case .batonPuma:
                let dir = TestPaths.temporaryDirectory("bench-puma")
                pumaDirectory = dir
                command = [Tools.puma, "-C", Self.writePumaConfig(single: true, directory: dir), "config.ru"]
                if !Tools.pumaNotifies { readiness = "mode = \"delay\"\ndelay = \"\(fixed(app.bootDelay + 1.5, 1))s\"" }
            default:
                command =
                    [TestPaths.executable("baton-demo-worker"), "--boot-delay", fixed(app.bootDelay, 1), "--hold", "\(app.memoryMiB)"]
                    + (app.growKiB > 0 ? ["--grow-per-request", "\(app.growKiB)K"] : [])
            }
            let env = appEnvironment.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: "\n")
            let harness = try BatonHarness(
                workers: workers, command: command, extraApp: appLines + "start_concurrency = \(min(workers, 8))\n[app.environment]\n\(env)",
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    backlog = 1024
                    [readiness]
                    \(readiness)
                    timeout = "\(bootTimeout)s"
                    \(environmentValue("BENCH_BOOT_NICE").map { "boot_nice = \($0)" } ?? "")
                    [stop]
                    timeout = "\(Self.drainSeconds)s"
                    \(contender.isRefork ? "[mold]\nrefork_after_requests = \(Self.reforkAfterRequests)" : "")
                    \(memory)
                    """, waitReady: false, tag: "bench", beforeStart: { dir in try? Tools.populate(dir + "/releases/r1") })
            guard harness.process.waitForLine(containing: "all \(workers) workers ready", timeout: .seconds(Int64(bootTimeout + 60))) != nil else {
                let log = harness.process.stderrLines.suffix(20).joined(separator: "\n")
                harness.stop()
                if let pumaDirectory { TestPaths.remove(pumaDirectory) }
                throw HarnessError("\(contender.rawValue) did not become ready:\n\(log)")
            }
            baton = harness
            initialWorkers = Set((try? harness.status().workers.map(\.pid)) ?? [])
            master = harness.process
            port = harness.port
            scratch = pumaDirectory
            fifo = nil
        case .gunicorn, .gunicornPreload, .uwsgi, .puma, .pumaPreload:
            let dir = TestPaths.temporaryDirectory("bench-peer")
            let release = dir + "/r1"
            _ = mkdir(release, 0o755)
            try Tools.populate(release)
            let port = HTTP.freePort()
            var fifoPath: String?
            let argv: [String]
            switch contender {
            case .gunicorn, .gunicornPreload:
                argv =
                    [Tools.python, "-m", "gunicorn"] + (contender == .gunicornPreload ? ["--preload"] : []) + [
                        "-w", "\(workers)", "-k", "gthread", "--threads", "2", "-b", "127.0.0.1:\(port)",
                        "--backlog", "1024", "--timeout", "\(bootTimeout)", "--graceful-timeout", "\(Self.drainSeconds)", "benchapp:app",
                    ] + extraArgs
            case .uwsgi:
                fifoPath = dir + "/master.fifo"
                argv =
                    [
                        Tools.uwsgi, "--plugin", "python3", "--master", "--processes", "\(workers)", "--threads", "2",
                        "--http-socket", "127.0.0.1:\(port)", "--add-header", "Connection: close", "--wsgi-file", "benchapp.py",
                        "--lazy-apps", "--master-fifo", fifoPath!, "--die-on-term", "--disable-logging", "--need-app",
                        "--listen", "1024", "--worker-reload-mercy", "\(Self.drainSeconds)",
                    ] + extraArgs
            default:
                let config = Self.writePumaConfig(single: false, workers: workers, port: port, directory: dir, preload: contender == .pumaPreload)
                argv = [Tools.puma, "-C", config, "config.ru"] + extraArgs
            }
            let env = TestPaths.cleanEnvironment(adding: app.environment)
            master = try TestProcess(argv, environment: env, directory: release)
            self.port = port
            baton = nil
            scratch = dir
            fifo = fifoPath
            if !Self.waitServing(port: port, workers: workers, master: master, timeout: Double(bootTimeout + 60)) {
                let log = master.stderrLines.suffix(20).joined(separator: "\n")
                stopProcessGroup(master)
                TestPaths.remove(dir)
                throw HarnessError("\(contender.rawValue) did not serve with \(workers) workers:\n\(log)")
            }
        }
    }

    /// The drain bound every contender gets: baton's `[stop] timeout`, gunicorn's
    /// `--graceful-timeout`, uWSGI's `--worker-reload-mercy`, puma's
    /// `worker_shutdown_timeout` and `force_shutdown_after`.
    static let drainSeconds = 5

    /// Worker pids as the supervisor sees them: its direct children.
    var children: [pid_t] { ProcFS.children(of: master.pid) }

    /// Direct children holding the app once every worker has loaded it: in mold
    /// mode the mold (loaded, a child of baton) is one more.
    var loadedChildren: Int { contender.isMold ? workers + 1 : workers }

    /// Restarts every worker: trigger `n` (0: first, 1: second ≈7 s later).
    func trigger(_ n: Int) throws {
        switch contender {
        case .batonGunicorn, .batonPuma, .batonDemo, .batonPumaMold, .batonPythonMold, .batonPumaMoldRefork, .batonPythonMoldRefork, .batonPythonMoldBaseline:
            guard let baton else { return }
            releaseNumber += 1
            let release = baton.makeRelease("r\(releaseNumber)")
            try Tools.populate(release)
            let args = n == 0 ? ["deploy", "--release", release, "--strategy", "surge"] : ["deploy", "--release", release, "--strategy", "replace", "--wait"]
            deploys.append(try baton.startCLI(args))
        case .gunicorn, .gunicornPreload: master.signal(SIGHUP)
        case .puma, .pumaPreload: master.signal(SIGUSR1)
        case .uwsgi:
            let fd = open(fifo ?? "", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw HarnessError("uwsgi master FIFO \(fifo ?? ""): errno \(errno)") }
            writeAll(fd, Array("c".utf8))
            close(fd)
        }
    }

    /// Exit codes of the `baton deploy` CLIs (nil while running), waiting up to `timeout` in total.
    func deployExitCodes(waitingUpTo timeout: Double) -> [Int32?] {
        let deadline = monotonicNow() + .milliseconds(Int64(timeout * 1000))
        return deploys.map { d in
            let left = deadline - monotonicNow()
            return left > .zero ? d.wait(timeout: left) : d.exitCode
        }
    }

    /// Stops everything it started and reaps it.
    func stop() {
        for d in deploys where d.exitCode == nil { _ = d.stop(timeout: .seconds(5)) }
        if let baton {
            baton.stop()
            // BENCH_LOG_DIR=DIR keeps baton's log of each run there (for finding what a peak was),
            // made if missing and written once baton has stopped: a log that cannot be written
            // stops the harness, and it used to leave that run's baton and workers running.
            if let dir = environmentValue("BENCH_LOG_DIR") {
                _ = try? TestProcess.run(["mkdir", "-p", dir])
                TestPaths.write("\(dir)/\(contender.rawValue)-\(master.pid).log", master.stderrLines.joined(separator: "\n") + "\n")
            }
        } else {
            stopProcessGroup(master)
        }
        if let scratch { TestPaths.remove(scratch) }
    }

    /// Polls until the port answers from `workers` distinct pids (or times out).
    private static func waitServing(port: UInt16, workers: Int, master: TestProcess, timeout: Double) -> Bool {
        let deadline = monotonicNow() + .milliseconds(Int64(timeout * 1000))
        var pids = Set<String>()
        while monotonicNow() < deadline, master.exitCode == nil {
            if ProcFS.children(of: master.pid).count >= workers, let body = HTTP.get(port: port, path: "/")?.body,
                let pid = body.split(separator: " ").first(where: { $0.hasPrefix("pid=") })
            {
                pids.insert(String(pid))
                if pids.count >= min(workers, 2) { return true }
                continue
            }
            pause(0.1)
        }
        return false
    }

    /// A puma config: single mode on baton's socket, or cluster mode on `port`.
    ///
    /// `queue_requests false` (no keep-alive) in both: puma 5.6 serves a busy
    /// keep-alive client inline on one thread, and its accept loop, which is also
    /// where the stop command is read, waits for a free thread before it accepts
    /// (`wait_until_not_full`). With every thread pinned by a client that keeps
    /// sending, a SIGTERM'd worker never begins its graceful stop, the drain bound
    /// SIGKILLs it mid-response, and that is a failed request under any
    /// supervisor (measured: Benchmarks/README.md, "puma and keep-alive").
    private static func writePumaConfig(single: Bool, workers: Int = 1, port: UInt16 = 0, directory: String, preload: Bool = false) -> String {
        let path = directory + "/puma.rb"
        let common = "threads 2, 2\nqueue_requests false\nquiet\nforce_shutdown_after \(drainSeconds)\n"
        let text =
            single
            ? "bind_to_activated_sockets 'only'\n" + common
            : "workers \(workers)\nbind 'tcp://127.0.0.1:\(port)?backlog=1024'\nworker_timeout 60\nworker_boot_timeout 60\nworker_shutdown_timeout \(drainSeconds)\n"
                + common + (preload ? "preload_app!\n" : "")
        TestPaths.write(path, text)
        return path
    }
}

/// SIGTERM to the process, wait, then SIGKILL to what is left of its process
/// group (spawned with setsid: the group is the peer's master and its workers).
func stopProcessGroup(_ process: TestProcess, timeout: Duration = .seconds(30)) {
    let pid = process.pid
    if process.exitCode == nil { process.signal(SIGTERM) }
    if process.wait(timeout: timeout) == nil { process.signal(SIGKILL) }
    // Workers left behind (orphans still in the group).
    for _ in 0..<50 {
        if kill(-pid, 0) != 0 { break }
        kill(-pid, SIGKILL)
        pause(0.1)
    }
    _ = process.wait(timeout: .seconds(10))
}
