import BatonCore
import BatonSystem
import Glibc

extension LinuxSupervisorHost {
    /// Starts a mold: `request` as a worker, plus the mold's end of a new channel placed right
    /// after the listening sockets (the number `BATON_MOLD_FD` in `request` names).
    func startMold(_ request: SpawnRequest) throws -> (process: ChildProcess, link: any MoldLink) {
        // The mold's end closes here with `pair`, once the mold has its copy (or the spawn failed).
        let pair = try MoldChannel.pair()
        var withChannel = request
        withChannel.passFDs.append(pair.otherEnd.rawValue)
        let process = try spawn(withChannel)
        return (process, pair.channel)
    }
}
