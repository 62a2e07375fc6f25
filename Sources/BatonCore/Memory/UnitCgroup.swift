/// Where a systemd unit's processes are, for `baton preflight --unit NAME` on a host that does
/// not run the app under baton yet: the unit's `ControlGroup` (from `systemctl show`) under the
/// cgroup mounts this process sees.
public enum UnitCgroup {
    /// Whether `name` is a unit name `systemctl` can be given as one argument: letters, digits
    /// and `:-_.@\`, at most 256 characters, not starting with `-` (no option, no shell text).
    public static func isValidUnitName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 256, !name.hasPrefix("-") else { return false }
        return name.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || ":-_.@\\".unicodeScalars.contains(c)
        }
    }

    /// The cgroup path in the output of `systemctl show -p ControlGroup --value NAME`; nil when
    /// it is empty (the unit is not running, or does not exist).
    public static func controlGroup(fromSystemctl output: String) -> String? {
        var text = output.split(separator: "\n").first.map(String.init) ?? ""
        if text.hasPrefix("ControlGroup=") { text.removeFirst("ControlGroup=".count) }
        text = String(text.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
        return text.hasPrefix("/") ? text : nil
    }

    /// The directories of `controlGroup` under `mounts`, the v1 memory hierarchy first (on a
    /// hybrid host it holds the memory figures), then cgroup v2.
    public static func directories(controlGroup: String, mounts: [CgroupMount]) -> [String] {
        let ordered = mounts.filter { $0.version == .v1 } + mounts.filter { $0.version == .v2 }
        var result: [String] = []
        for mount in ordered {
            if let dir = mount.directory(of: controlGroup), !result.contains(dir) { result.append(dir) }
        }
        return result
    }
}
