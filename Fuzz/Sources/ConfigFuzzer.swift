/// libFuzzer target: arbitrary bytes as config text (and as an environment file) through
/// `FuzzEntry.config`, the in-process text checks. Built by `make fuzz` together with the
/// BatonCore sources it needs (not TOMLKit: the TOML parser runs in a child process).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let outcome = FuzzEntry.config(bytes)
    if outcome.hasPrefix(FuzzEntry.bugMarker) || outcome.contains("\n") { fatalError(outcome) }
    return 0
}
