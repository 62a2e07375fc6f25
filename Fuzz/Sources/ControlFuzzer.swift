/// libFuzzer target: arbitrary bytes as one control-socket request line through
/// `FuzzEntry.control`, the daemon's decoder plus an encode/decode round trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let outcome = FuzzEntry.control(bytes)
    if outcome.hasPrefix(FuzzEntry.bugMarker) || outcome.contains("\n") { fatalError(outcome) }
    return 0
}
