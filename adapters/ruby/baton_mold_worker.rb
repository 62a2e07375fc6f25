# frozen_string_literal: true

# The worker side of baton-mold (docs/MOLD.md, step 4 of a spawn, and refork).

module BatonMold
  # One forked worker: takes its descriptors and environment from the spawn
  # request, serves the app with a Puma::Server (single mode) on the
  # inherited listening sockets, stops gracefully on SIGTERM, and becomes a
  # mold when promoted on the channel named by BATON_MOLD_FD in its env.
  class Worker
    STDIO = [$stdin, $stdout, $stderr].freeze

    def initialize(app, request, ios, targets, env)
      @app = app
      @request = request
      @ios = ios
      @targets = targets
      @env = env
      @promote = false
      @terminated = false
      @served = 0
    end

    # Never returns: exits 0 after a graceful stop, or serves as a mold.
    def run
      Process.setpgid(0, 0)
      %w[TERM INT HUP QUIT USR1 USR2 CHLD].each { |sig| Signal.trap(sig, "DEFAULT") }
      place_descriptors
      ENV.replace(@env.to_h { |entry| entry.split("=", 2).then { |name, value| [name, value.to_s] } })
      ENV["LISTEN_PID"] = Process.pid.to_s if @request["listen_pid"]
      ENV["WATCHDOG_PID"] = Process.pid.to_s if @request["watchdog_pid"]
      Process.setproctitle("baton-mold worker slot #{ENV.fetch("BATON_SLOT", "?")}")
      BatonMold.run_worker_boot
      serve
    rescue StandardError => e
      warn "baton-mold: worker #{Process.pid}: #{e.class}: #{e.message}"
      exit!(1)
    end

    private

    # Each attached descriptor at its target, nothing else open but stdin on
    # /dev/null and the descriptors the Ruby VM keeps for itself (its
    # eventfds, made again at every fork, which no Ruby object owns).
    def place_descriptors
      base = [@targets.max || 0, 2].max + 1
      high = @ios.map { |io| io.fcntl(Fcntl::F_DUPFD, base) } # no CLOEXEC, above every target
      ObjectSpace.each_object(IO) do |io|
        next if STDIO.include?(io) || io.closed?

        io.close # the mold's channel, the request's copies, the app's own files
      rescue IOError, SystemCallError
        nil
      end
      close_unowned(high)
      $stdin.reopen("/dev/null") unless @targets.include?(0)
      @targets.each_with_index { |target, i| place(high[i], target) }
      high.each { |fd| IO.for_fd(fd).close }
    end

    # Closes every descriptor no Ruby object owns, but the VM's own.
    def close_unowned(keep)
      links = Dir.children("/proc/self/fd").map(&:to_i).to_h do |fd|
        [fd, (File.readlink("/proc/self/fd/#{fd}") rescue nil)]
      end
      # a self-pipe (a C library's wake-up pipe: both ends here, nowhere near a
      # target), not a pipe that a promoted worker holds as its output
      holders = links.group_by { |_fd, link| link }.transform_values { |pairs| pairs.map(&:first) }
      links.each do |fd, link|
        next if fd <= 2 || keep.include?(fd) || link.nil?
        next if link.start_with?("anon_inode:") # the VM's eventfds (place refuses a target they hold)
        next if link.start_with?("pipe:") && holders[link].size == 2 && holders[link].none? { |n| n <= 2 || @targets.include?(n) }

        begin
          IO.for_fd(fd).close
        rescue SystemCallError, ArgumentError
          nil
        end
      end
    end

    def place(source, target)
      if target <= 2
        sync = STDIO[target].sync
        STDIO[target].reopen(IO.for_fd(source, autoclose: false))
        STDIO[target].sync = sync # reopen takes the mode of the source, not its own
        return
      end
      if File.exist?("/proc/self/fd/#{target}")
        raise SpawnError, "target fd #{target} is held by the Ruby VM (#{File.readlink("/proc/self/fd/#{target}")})"
      end

      got = IO.for_fd(source, autoclose: false).fcntl(Fcntl::F_DUPFD, target)
      raise SpawnError, "fd #{target} placed at #{got}" unless got == target
    end

    def listeners
      count = Integer(ENV.fetch("LISTEN_FDS", "0"), exception: false) || 0
      (3...(3 + count)).map do |fd|
        probe = Socket.for_fd(fd)
        probe.autoclose = false
        unix = probe.local_address.afamily == Socket::AF_UNIX
        [fd, unix, unix ? probe.local_address.unix_path : nil]
      end
    end

    def serve
      options = {
        min_threads: Integer(ENV.fetch("PUMA_MIN_THREADS", "0")),
        max_threads: Integer(ENV.fetch("PUMA_MAX_THREADS", "5")),
        queue_requests: ENV.fetch("PUMA_QUEUE_REQUESTS", "true") != "false",
      }
      force = ENV["PUMA_FORCE_SHUTDOWN_AFTER"]
      options[:force_shutdown_after] = Float(force) if force && !force.empty?
      app = @app
      counted = lambda do |env|
        @served += 1 # puma's threads share one counter; a lost increment only delays the report
        app.call(env)
      end
      @server = Puma::Server.new(counted, Puma::Events.stdio, options)
      listeners.each do |fd, unix, path|
        unix ? @server.binder.inherit_unix_listener(path, fd) : @server.binder.inherit_tcp_listener(nil, nil, fd)
      end
      Signal.trap("TERM") do
        @terminated = true
        @server.stop # stop accepting; puma's thread pool finishes the requests in flight
      end
      thread = @server.run
      start_watchdog
      BatonMold.notify("READY=1")
      @reporter = report_requests
      channel = watch_promotion
      thread.join
      if @promote && !@terminated
        become_mold(channel)
      else
        $stdout.flush
        $stderr.flush
        exit!(0)
      end
    end

    # WATCHDOG=1 at half of WATCHDOG_USEC when baton's worker watchdog is on
    # ([readiness] watchdog): only in the process WATCHDOG_PID names, as
    # sd_watchdog_enabled has it. A starved audit: without it every worker
    # was replaced as hung 4 s after ready, and the slots crash-looped.
    def start_watchdog
      usec = ENV.fetch("WATCHDOG_USEC", "0").to_i
      return if usec <= 0 || ENV.fetch("WATCHDOG_PID", Process.pid.to_s) != Process.pid.to_s

      Thread.new do
        loop do
          BatonMold.notify("WATCHDOG=1")
          sleep usec / 2e6
        end
      end
    end

    # X_BATON_REQUESTS=N to baton (its [rolling] max_requests and refork's
    # refork_after_requests count these), at most twice a second.
    def report_requests
      Thread.new do
        reported = 0
        loop do
          sleep 0.5
          next if @served == reported

          reported = @served
          BatonMold.notify("X_BATON_REQUESTS=#{reported}")
        end
      end
    end

    # Refork: with BATON_MOLD_FD in its env, a thread waits for
    # {"op": "promote"}; the server then stops (in-flight requests finish) and
    # the main thread, past thread.join, replies and serves as a mold.
    def watch_promotion
      fd = Integer(ENV.fetch("BATON_MOLD_FD", ""), exception: false)
      return nil if fd.nil?

      channel = Socket.for_fd(fd)
      Thread.new do
        loop do
          data = channel.recv(65_536)
          break if data.empty? # baton closed it: no promotion for this worker

          message = JSON.parse(data) rescue {}
          next unless message["op"] == "promote"

          @promote = true
          @server.stop
          break
        end
      end
      channel
    end

    def become_mold(channel)
      @reporter&.kill # a mold serves no requests
      channel.sendmsg(JSON.generate({ "op" => "promoted" }))
      ENV["BATON_SLOT"] = "mold"
      ENV.delete("LISTEN_PID")
      Process.setproctitle("baton-mold mold (promoted)")
      GC.start
      BatonMold.serve_channel(@app, channel)
    end
  end
end
