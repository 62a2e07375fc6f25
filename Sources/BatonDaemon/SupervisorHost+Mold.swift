import BatonCore
import BatonSystem
import Glibc

extension LinuxSupervisorHost {
    /// Starts a mold: `request` as a worker, plus the mold's end of a new channel placed right
    /// after the listening sockets (the number `BATON_MOLD_FD` in `request` names).
    func startMold(_ request: SpawnRequest) throws -> (process: ChildProcess, link: any MoldLink) {
        let (channel, moldEnd) = try MoldChannel.pair()
        defer { close(moldEnd) }
        var withChannel = request
        withChannel.passFDs.append(moldEnd)
        let process = try spawn(withChannel)
        return (process, channel)
    }
}
