# The benchmark's Rack app (puma, and puma under baton): the same behaviour as
# benchapp.py. At load (once per worker: puma here runs without preload) it
# sleeps BENCH_BOOT_DELAY seconds and fills BENCH_APP_MB MiB of touched memory;
# each request answers "hello pid=N release=R"; BENCH_GROW_KB leaks per request.
boot = Float(ENV.fetch("BENCH_BOOT_DELAY", "0"))
sleep(boot) if boot > 0
BALLAST = ("\x01" * (Integer(ENV.fetch("BENCH_APP_MB", "50")) << 20)).freeze
GROW = Integer(ENV.fetch("BENCH_GROW_KB", "0")) * 1024
RELEASE = ENV["BENCH_RELEASE"] || File.basename(Dir.pwd)
LEAK = []

run lambda { |_env|
  LEAK << ("\x02" * GROW) if GROW > 0
  body = "hello pid=#{Process.pid} release=#{RELEASE}\n"
  [200, { "content-type" => "text/plain", "content-length" => body.bytesize.to_s }, [body]]
}
