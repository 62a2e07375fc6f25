import BatonCore
import Testing

/// Recorded on the build machine.
private enum Recorded {
    /// /proc/PID/maps of a python3 with 16 idle threads, the process measured in docs/ARCHITECTURE.md (*Platform facts*)
    /// (trailing spaces after anonymous mappings trimmed).
    static let python16Maps = """
        55b7f3c13000-55b7f3c14000 r--p 00000000 fe:00 20504                      /root/.pyenv/versions/3.11.7/bin/python3.11
        55b7f3c14000-55b7f3c15000 r-xp 00001000 fe:00 20504                      /root/.pyenv/versions/3.11.7/bin/python3.11
        55b7f3c15000-55b7f3c16000 r--p 00002000 fe:00 20504                      /root/.pyenv/versions/3.11.7/bin/python3.11
        55b7f3c16000-55b7f3c17000 r--p 00002000 fe:00 20504                      /root/.pyenv/versions/3.11.7/bin/python3.11
        55b7f3c17000-55b7f3c18000 rw-p 00003000 fe:00 20504                      /root/.pyenv/versions/3.11.7/bin/python3.11
        55b7f5021000-55b7f51b2000 rw-p 00000000 00:00 0                          [heap]
        7f71bc000000-7f71bc021000 rw-p 00000000 00:00 0
        7f71bc021000-7f71c0000000 ---p 00000000 00:00 0
        7f71c0000000-7f71c0021000 rw-p 00000000 00:00 0
        7f71c0021000-7f71c4000000 ---p 00000000 00:00 0
        7f71c4000000-7f71c4021000 rw-p 00000000 00:00 0
        7f71c4021000-7f71c8000000 ---p 00000000 00:00 0
        7f71c9ffc000-7f71c9ffd000 ---p 00000000 00:00 0
        7f71c9ffd000-7f71ca7fd000 rw-p 00000000 00:00 0
        7f71ca7fd000-7f71ca7fe000 ---p 00000000 00:00 0
        7f71ca7fe000-7f71caffe000 rw-p 00000000 00:00 0
        7f71caffe000-7f71cafff000 ---p 00000000 00:00 0
        7f71cafff000-7f71cb7ff000 rw-p 00000000 00:00 0
        7f71cb7ff000-7f71cb800000 ---p 00000000 00:00 0
        7f71cb800000-7f71cc000000 rw-p 00000000 00:00 0
        7f71cc000000-7f71cc021000 rw-p 00000000 00:00 0
        7f71cc021000-7f71d0000000 ---p 00000000 00:00 0
        7f71d0000000-7f71d0021000 rw-p 00000000 00:00 0
        7f71d0021000-7f71d4000000 ---p 00000000 00:00 0
        7f71d4000000-7f71d4021000 rw-p 00000000 00:00 0
        7f71d4021000-7f71d8000000 ---p 00000000 00:00 0
        7f71d8000000-7f71d8021000 rw-p 00000000 00:00 0
        7f71d8021000-7f71dc000000 ---p 00000000 00:00 0
        7f71dc000000-7f71dc021000 rw-p 00000000 00:00 0
        7f71dc021000-7f71e0000000 ---p 00000000 00:00 0
        7f71e0000000-7f71e0021000 rw-p 00000000 00:00 0
        7f71e0021000-7f71e4000000 ---p 00000000 00:00 0
        7f71e4000000-7f71e4021000 rw-p 00000000 00:00 0
        7f71e4021000-7f71e8000000 ---p 00000000 00:00 0
        7f71e87f9000-7f71e87fa000 ---p 00000000 00:00 0
        7f71e87fa000-7f71e8ffa000 rw-p 00000000 00:00 0
        7f71e8ffa000-7f71e8ffb000 ---p 00000000 00:00 0
        7f71e8ffb000-7f71e97fb000 rw-p 00000000 00:00 0
        7f71e97fb000-7f71e97fc000 ---p 00000000 00:00 0
        7f71e97fc000-7f71e9ffc000 rw-p 00000000 00:00 0
        7f71e9ffc000-7f71e9ffd000 ---p 00000000 00:00 0
        7f71e9ffd000-7f71ea7fd000 rw-p 00000000 00:00 0
        7f71ea7fd000-7f71ea7fe000 ---p 00000000 00:00 0
        7f71ea7fe000-7f71eaffe000 rw-p 00000000 00:00 0
        7f71eaffe000-7f71eafff000 ---p 00000000 00:00 0
        7f71eafff000-7f71eb7ff000 rw-p 00000000 00:00 0
        7f71eb7ff000-7f71eb800000 ---p 00000000 00:00 0
        7f71eb800000-7f71ec000000 rw-p 00000000 00:00 0
        7f71ec000000-7f71ec021000 rw-p 00000000 00:00 0
        7f71ec021000-7f71f0000000 ---p 00000000 00:00 0
        7f71f0000000-7f71f0021000 rw-p 00000000 00:00 0
        7f71f0021000-7f71f4000000 ---p 00000000 00:00 0
        7f71f4000000-7f71f4021000 rw-p 00000000 00:00 0
        7f71f4021000-7f71f8000000 ---p 00000000 00:00 0
        7f71f8000000-7f71f8021000 rw-p 00000000 00:00 0
        7f71f8021000-7f71fc000000 ---p 00000000 00:00 0
        7f71fc000000-7f71fc021000 rw-p 00000000 00:00 0
        7f71fc021000-7f7200000000 ---p 00000000 00:00 0
        7f72005ad000-7f72005dd000 rw-p 00000000 00:00 0
        7f72005dd000-7f72005de000 ---p 00000000 00:00 0
        7f72005de000-7f7200dde000 rw-p 00000000 00:00 0
        7f7200dde000-7f7200de2000 rw-p 00000000 00:00 0
        7f7200de2000-7f7200de3000 ---p 00000000 00:00 0
        7f7200de3000-7f72015e3000 rw-p 00000000 00:00 0
        7f72015e3000-7f72015e4000 ---p 00000000 00:00 0
        7f72015e4000-7f7201de4000 rw-p 00000000 00:00 0
        7f7201de4000-7f7201de5000 ---p 00000000 00:00 0
        7f7201de5000-7f72025e5000 rw-p 00000000 00:00 0
        7f72025e5000-7f72025e6000 ---p 00000000 00:00 0
        7f72025e6000-7f7202de6000 rw-p 00000000 00:00 0
        7f7202de6000-7f7202f19000 rw-p 00000000 00:00 0
        7f7202f1a000-7f7202f26000 rw-p 00000000 00:00 0
        7f7202f26000-7f7202f29000 r--p 00000000 fe:00 23536                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so
        7f7202f29000-7f7202f2e000 r-xp 00003000 fe:00 23536                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so
        7f7202f2e000-7f7202f31000 r--p 00008000 fe:00 23536                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so
        7f7202f31000-7f7202f32000 r--p 0000b000 fe:00 23536                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so
        7f7202f32000-7f7202f33000 rw-p 0000c000 fe:00 23536                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so
        7f7202f33000-7f7202f35000 r--p 00000000 fe:00 23551                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/binascii.cpython-311-x86_64-linux-gnu.so
        7f7202f35000-7f7202f38000 r-xp 00002000 fe:00 23551                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/binascii.cpython-311-x86_64-linux-gnu.so
        7f7202f38000-7f7202f3a000 r--p 00005000 fe:00 23551                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/binascii.cpython-311-x86_64-linux-gnu.so
        7f7202f3a000-7f7202f3b000 r--p 00006000 fe:00 23551                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/binascii.cpython-311-x86_64-linux-gnu.so
        7f7202f3b000-7f7202f3c000 rw-p 00007000 fe:00 23551                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/binascii.cpython-311-x86_64-linux-gnu.so
        7f7202f3c000-7f7202f3d000 r--p 00000000 fe:00 23544                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_typing.cpython-311-x86_64-linux-gnu.so
        7f7202f3d000-7f7202f3e000 r-xp 00001000 fe:00 23544                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_typing.cpython-311-x86_64-linux-gnu.so
        7f7202f3e000-7f7202f3f000 r--p 00002000 fe:00 23544                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_typing.cpython-311-x86_64-linux-gnu.so
        7f7202f3f000-7f7202f40000 r--p 00002000 fe:00 23544                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_typing.cpython-311-x86_64-linux-gnu.so
        7f7202f40000-7f7202f41000 rw-p 00003000 fe:00 23544                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_typing.cpython-311-x86_64-linux-gnu.so
        7f7202f41000-7f7202f43000 r--p 00000000 fe:00 23531                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_sha512.cpython-311-x86_64-linux-gnu.so
        7f7202f43000-7f7202f47000 r-xp 00002000 fe:00 23531                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_sha512.cpython-311-x86_64-linux-gnu.so
        7f7202f47000-7f7202f48000 r--p 00006000 fe:00 23531                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_sha512.cpython-311-x86_64-linux-gnu.so
        7f7202f48000-7f7202f49000 r--p 00006000 fe:00 23531                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_sha512.cpython-311-x86_64-linux-gnu.so
        7f7202f49000-7f7202f4a000 rw-p 00007000 fe:00 23531                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_sha512.cpython-311-x86_64-linux-gnu.so
        7f7202f4a000-7f7202f4d000 r--p 00000000 fe:00 23555                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
        7f7202f4d000-7f7202f56000 r-xp 00003000 fe:00 23555                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
        7f7202f56000-7f7202f5b000 r--p 0000c000 fe:00 23555                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
        7f7202f5b000-7f7202f5c000 r--p 00010000 fe:00 23555                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
        7f7202f5c000-7f7202f5d000 rw-p 00011000 fe:00 23555                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
        7f7202f5d000-7f7202f61000 r--p 00000000 fe:00 333469                     /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
        7f7202f61000-7f7202f7e000 r-xp 00004000 fe:00 333469                     /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
        7f7202f7e000-7f7202f8a000 r--p 00021000 fe:00 333469                     /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
        7f7202f8a000-7f7202f8b000 r--p 0002d000 fe:00 333469                     /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
        7f7202f8b000-7f7202f8c000 rw-p 0002e000 fe:00 333469                     /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
        7f7202f8c000-7f7202f8f000 r--p 00000000 fe:00 23518                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so
        7f7202f8f000-7f7202f93000 r-xp 00003000 fe:00 23518                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so
        7f7202f93000-7f7202f96000 r--p 00007000 fe:00 23518                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so
        7f7202f96000-7f7202f97000 r--p 00009000 fe:00 23518                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so
        7f7202f97000-7f7202f98000 rw-p 0000a000 fe:00 23518                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so
        7f7202f98000-7f7202f9a000 r--p 00000000 fe:00 333148                     /usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4
        7f7202f9a000-7f7202fa7000 r-xp 00002000 fe:00 333148                     /usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4
        7f7202fa7000-7f7202fa9000 r--p 0000f000 fe:00 333148                     /usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4
        7f7202fa9000-7f7202faa000 r--p 00010000 fe:00 333148                     /usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4
        7f7202faa000-7f7202fab000 rw-p 00011000 fe:00 333148                     /usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4
        7f7202fad000-7f7202faf000 r--p 00000000 fe:00 23527                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_random.cpython-311-x86_64-linux-gnu.so
        7f7202faf000-7f7202fb1000 r-xp 00002000 fe:00 23527                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_random.cpython-311-x86_64-linux-gnu.so
        7f7202fb1000-7f7202fb2000 r--p 00004000 fe:00 23527                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_random.cpython-311-x86_64-linux-gnu.so
        7f7202fb2000-7f7202fb3000 r--p 00004000 fe:00 23527                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_random.cpython-311-x86_64-linux-gnu.so
        7f7202fb3000-7f7202fb4000 rw-p 00005000 fe:00 23527                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_random.cpython-311-x86_64-linux-gnu.so
        7f7202fb4000-7f7202fb7000 r--p 00000000 fe:00 333838                     /usr/lib/x86_64-linux-gnu/libz.so.1.2.13
        7f7202fb7000-7f7202fca000 r-xp 00003000 fe:00 333838                     /usr/lib/x86_64-linux-gnu/libz.so.1.2.13
        7f7202fca000-7f7202fd1000 r--p 00016000 fe:00 333838                     /usr/lib/x86_64-linux-gnu/libz.so.1.2.13
        7f7202fd1000-7f7202fd2000 r--p 0001c000 fe:00 333838                     /usr/lib/x86_64-linux-gnu/libz.so.1.2.13
        7f7202fd2000-7f7202fd3000 rw-p 0001d000 fe:00 333838                     /usr/lib/x86_64-linux-gnu/libz.so.1.2.13
        7f7202fd5000-7f7202fd7000 r--p 00000000 fe:00 23497                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so
        7f7202fd7000-7f7202fd9000 r-xp 00002000 fe:00 23497                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so
        7f7202fd9000-7f7202fda000 r--p 00004000 fe:00 23497                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so
        7f7202fda000-7f7202fdb000 r--p 00005000 fe:00 23497                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so
        7f7202fdb000-7f7202fdc000 rw-p 00006000 fe:00 23497                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so
        7f7202fdc000-7f720333e000 rw-p 00000000 00:00 0
        7f720333e000-7f720334e000 r--p 00000000 fe:00 333473                     /usr/lib/x86_64-linux-gnu/libm.so.6
        7f720334e000-7f72033c2000 r-xp 00010000 fe:00 333473                     /usr/lib/x86_64-linux-gnu/libm.so.6
        7f72033c2000-7f720341c000 r--p 00084000 fe:00 333473                     /usr/lib/x86_64-linux-gnu/libm.so.6
        7f720341c000-7f720341d000 r--p 000dd000 fe:00 333473                     /usr/lib/x86_64-linux-gnu/libm.so.6
        7f720341d000-7f720341e000 rw-p 000de000 fe:00 333473                     /usr/lib/x86_64-linux-gnu/libm.so.6
        7f720341e000-7f7203444000 r--p 00000000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f7203444000-7f720359a000 r-xp 00026000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f720359a000-7f72035ed000 r--p 0017c000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f72035ed000-7f72035f1000 r--p 001cf000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f72035f1000-7f72035f3000 rw-p 001d3000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f72035f3000-7f7203600000 rw-p 00000000 00:00 0
        7f7203600000-7f72036f5000 r--p 00000000 fe:00 20714                      /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
        7f72036f5000-7f7203931000 r-xp 000f5000 fe:00 20714                      /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
        7f7203931000-7f7203a15000 r--p 00331000 fe:00 20714                      /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
        7f7203a15000-7f7203a44000 r--p 00414000 fe:00 20714                      /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
        7f7203a44000-7f7203b78000 rw-p 00443000 fe:00 20714                      /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
        7f7203b78000-7f7203bba000 rw-p 00000000 00:00 0
        7f7203bba000-7f7203bbb000 r--p 00000000 fe:00 23495                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect.cpython-311-x86_64-linux-gnu.so
        7f7203bbb000-7f7203bbd000 r-xp 00001000 fe:00 23495                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect.cpython-311-x86_64-linux-gnu.so
        7f7203bbd000-7f7203bbe000 r--p 00003000 fe:00 23495                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect.cpython-311-x86_64-linux-gnu.so
        7f7203bbe000-7f7203bbf000 r--p 00003000 fe:00 23495                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect.cpython-311-x86_64-linux-gnu.so
        7f7203bbf000-7f7203bc0000 rw-p 00004000 fe:00 23495                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect.cpython-311-x86_64-linux-gnu.so
        7f7203bc0000-7f7203bc2000 r--p 00000000 fe:00 23569                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/zlib.cpython-311-x86_64-linux-gnu.so
        7f7203bc2000-7f7203bc7000 r-xp 00002000 fe:00 23569                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/zlib.cpython-311-x86_64-linux-gnu.so
        7f7203bc7000-7f7203bca000 r--p 00007000 fe:00 23569                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/zlib.cpython-311-x86_64-linux-gnu.so
        7f7203bca000-7f7203bcb000 r--p 00009000 fe:00 23569                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/zlib.cpython-311-x86_64-linux-gnu.so
        7f7203bcb000-7f7203bcc000 rw-p 0000a000 fe:00 23569                      /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/zlib.cpython-311-x86_64-linux-gnu.so
        7f7203bcc000-7f7203bd0000 rw-p 00000000 00:00 0
        7f7203bd0000-7f7203c27000 r--p 00000000 fe:00 323409                     /usr/lib/locale/C.utf8/LC_CTYPE
        7f7203c27000-7f7203c29000 rw-p 00000000 00:00 0
        7f7203c2b000-7f7203c32000 r--s 00000000 fe:00 332619                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
        7f7203c32000-7f7203c34000 rw-p 00000000 00:00 0
        7f7203c34000-7f7203c38000 r--p 00000000 00:00 0                          [vvar]
        7f7203c38000-7f7203c3a000 r--p 00000000 00:00 0                          [vvar_vclock]
        7f7203c3a000-7f7203c3c000 r-xp 00000000 00:00 0                          [vdso]
        7f7203c3c000-7f7203c3d000 r--p 00000000 fe:00 332717                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
        7f7203c3d000-7f7203c63000 r-xp 00001000 fe:00 332717                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
        7f7203c63000-7f7203c6d000 r--p 00027000 fe:00 332717                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
        7f7203c6d000-7f7203c6f000 r--p 00031000 fe:00 332717                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
        7f7203c6f000-7f7203c71000 rw-p 00033000 fe:00 332717                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
        7ffff3186000-7ffff31a7000 rw-p 00000000 00:00 0                          [stack]
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]

        """
}

@Suite("Commit charge")
struct MemoryCommitChargeTests {
    private let kib: UInt64 = 1024

    @Test func commitChargeOfAThreadedPython() {
        let charge = CommitCharge.privateWritable(maps: Recorded.python16Maps)
        #expect(charge == 144_785_408)  // 138.1 MiB: sixteen 8 MiB thread stacks and the heap
        // Its smaps_rollup said Pss: 11846 kB: the commit charge is over ten times the PSS.
        #expect(charge > 10 * 11_846 * kib)
    }

    @Test func commitChargeCountsPrivateWritableOnly() {
        let maps = """
            00400000-00401000 r-xp 00000000 fe:00 1   /bin/x
            00600000-00602000 rw-p 00000000 fe:00 1   /bin/x
            7f0000000000-7f0000100000 rw-s 00000000 00:01 7   /dev/shm/seg
            7f0000100000-7f0000200000 rwxp 00000000 00:00 0
            7f0000200000-7f0000300000 ---p 00000000 00:00 0
            7f0000300000-7f0000301000 r--p 00000000 00:00 0
            7f0000400000-7f0000401000 rw-p 00000000 00:00 0 \("")
            garbage line
            zz-yy rw-p 0 0 0

            """
        #expect(CommitCharge.privateWritable(maps: maps) == 0x2000 + 0x100000 + 0x1000)
        #expect(CommitCharge.privateWritable(maps: "") == 0)
    }
}
