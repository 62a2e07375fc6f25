# The conformance driver's Rack app (adapters/conformance/mold_conformance.py).
# Loaded once by the mold; every worker forked from it serves:
#   GET /env        JSON: this process's pid, LISTEN_PID, LISTEN_FDS, BATON_SLOT,
#                   and the pid baton-mold's on_worker_boot hook ran in
#   GET /slow?ms=N  prints "slow-start PID" on stdout, sleeps N ms, answers "slow done"
#   GET /warm       fills WARM (run-time state, as a cache) once: {"warmed": "<pid that warmed it>"}
#   anything else   "ok"
# BALLAST is filled at load, in the mold, so that workers share it copy-on-write.
require "json"

$stdout.sync = true
BALLAST = ("\x01" * (Integer(ENV.fetch("CONFORMANCE_APP_MB", "16")) << 20)).freeze
# baton-mold's hook, run in each worker after the fork: /env reports where it ran.
$worker_boot_pid = nil
WARM = []
BatonMold.on_worker_boot { $worker_boot_pid = Process.pid } if defined?(BatonMold)

run lambda { |env|
  body =
    case env["PATH_INFO"]
    when "/env"
      JSON.generate(
        "pid" => Process.pid, "listen_pid" => ENV["LISTEN_PID"], "listen_fds" => ENV["LISTEN_FDS"],
        "baton_slot" => ENV["BATON_SLOT"], "ballast" => BALLAST.bytesize,
        "worker_boot_pid" => $worker_boot_pid, "warmed" => WARM.first&.slice(/\A\d+/)
      )
    when "/warm"
      WARM << "#{Process.pid}-#{"\x03" * (4 << 20)}".freeze if WARM.empty?
      JSON.generate("warmed" => WARM.first[/\A\d+/])
    when "/slow"
      ms = Integer(env["QUERY_STRING"][/ms=(\d+)/, 1] || "1000")
      puts "slow-start #{Process.pid}"
      sleep(ms / 1000.0)
      "slow done"
    else
      "ok"
    end
  [200, { "content-type" => "text/plain", "content-length" => body.bytesize.to_s }, [body]]
}
