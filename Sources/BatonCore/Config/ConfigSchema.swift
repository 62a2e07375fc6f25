/// The sections and keys a config may have, and the known key a mistyped one most likely
/// stands for.
///
/// Free of the TOML parser so that the fuzzer (Fuzz/) can drive it with arbitrary keys.
enum ConfigSchema {
    /// Every section and the keys it accepts, in documentation order. `app.environment` is a
    /// table of free-form names.
    static let sections: [(section: String, keys: [String])] = [
        (
            "app",
            [
                "name", "command", "directory", "workers", "user", "group", "environment_file",
                "start_concurrency", "environment", "runtime_directory", "state_directory", "start_attempts",
                "mode",
            ]
        ),
        ("listen", ["addresses", "socket_mode", "socket_group", "backlog"]),
        (
            "readiness",
            [
                "mode", "timeout", "delay", "probe", "probe_interval", "probe_timeout", "watchdog", "stopped_timeout",
                "liveness_probe", "liveness_interval", "liveness_failures", "boot_nice",
            ]
        ),
        ("stop", ["signal", "timeout"]),
        (
            "deploy",
            [
                "strategy", "max_surge", "max_unavailable", "canary", "worker_footprint", "timeout", "keep_releases", "releases_directory",
                "stability_window",
            ]
        ),
        (
            "memory",
            [
                "budget", "reserve", "threshold", "worker_limit", "check_interval", "min_worker_age",
                "smaps_every",
                "reservation_margin", "mergeable",
            ]
        ),
        ("rolling", ["max_age", "splay", "max_requests", "max_requests_jitter", "recycle_concurrency", "recycle_spacing"]),
        ("control", ["socket", "group", "read_group", "idle_timeout"]),
        ("metrics", ["address"]),
        ("mold", ["start_timeout", "spawn_timeout", "refork_after_requests", "refork_after"]),
    ]

    /// How much of an unknown key a message echoes: a key can be any length, a message is one
    /// readable line.
    static let maxEchoedKey = 64

    /// `key` for a message: cut to ``maxEchoedKey`` characters and marked with "…" when longer.
    static func echoed(_ key: String) -> String {
        var scalars = key.unicodeScalars.makeIterator()
        var out = String.UnicodeScalarView()
        for _ in 0..<maxEchoedKey {
            guard let scalar = scalars.next() else { return key }
            out.append(scalar)
        }
        return scalars.next() == nil ? key : String(out) + "…"
    }

    /// The known key `path` most likely stands for: the closest within edit distance 2, else
    /// the same key name in another section (`deploy.max_age` → `rolling.max_age`).
    ///
    /// Linear in the key's length: the distance is at least the difference in length, so only
    /// candidates within 2 characters of the key's length are compared at all.
    static func suggestion(for path: [String]) -> String? {
        let joined = KeyPath.join(path)
        let length = joined.unicodeScalars.count
        let known: [(path: String, key: String?)] = sections.flatMap { entry in
            [(entry.section, nil)] + entry.keys.map { ("\(entry.section).\($0)", $0) }
        }
        // Compare like with like: a top-level name with sections, a key with keys.
        let candidates = known.filter { ($0.key == nil) == (path.count == 1) }
        var best: (path: String, distance: Int)?
        for candidate in candidates where abs(candidate.path.unicodeScalars.count - length) <= 2 {
            let distance = editDistance(joined, candidate.path)
            if distance <= 2, distance < (best?.distance ?? Int.max) {
                best = (candidate.path, distance)
            }
        }
        if let best { return best.path }
        // Another supervisor's name for a key (a habits audit: `bind`, `graceful_timeout`).
        if let last = path.last, let key = peerNames[last] { return key }
        // A key put outside its section: `max_requests` at the top, `deploy.max_age`.
        let matches = known.filter { $0.key != nil && $0.key == path.last }
        guard path.count == 2 || matches.count == 1 else { return nil }
        return matches.first?.path
    }

    /// What gunicorn, puma, unicorn and systemd call some of baton's keys.
    static let peerNames: [String: String] = [
        "bind": "listen.addresses", "listen": "listen.addresses", "graceful_timeout": "stop.timeout", "worker_shutdown_timeout": "stop.timeout",
        "kill_signal": "stop.signal", "kill_timeout": "stop.timeout", "max_requests_per_worker": "rolling.max_requests",
    ]

    /// The optimal-string-alignment distance: insertions, deletions, substitutions and
    /// transpositions of neighbours each cost 1 (`wrokers` is one edit from `workers`).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
