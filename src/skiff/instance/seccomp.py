"""A seccomp filter refusing the system calls no micro app needs.

Written as a few dozen BPF instructions instead of through libseccomp: it
loads in microseconds on the cold-start path and needs no C library or
Python binding. x86_64 only; elsewhere ``supported()`` says why not.

Refused with EPERM: tracing other processes, mounting, loading kernel code or
modules, BPF, rebooting, changing the clock, entering or creating namespaces
(``unshare``, ``setns``, and ``clone`` with namespace flags), keyrings,
perf events, userfaultfd, io_uring, reading other processes' memory.
``clone3`` answers ENOSYS so the C library falls back to ``clone``, whose
flags the filter can inspect.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000

DENIED = {
    "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153, "pivot_root": 155,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "create_module": 174, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442,
}
_CLONE, _CLONE3 = 56, 435
_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


_MACHINE = platform.machine()


def supported() -> tuple[bool, str]:
    if _MACHINE != "x86_64":
        return False, f"the filter is written for x86_64, not {_MACHINE}"
    return True, ""


def program() -> list[tuple[int, int, int, int]]:
    """The BPF program as (code, jt, jf, k) instructions; jumps are relative."""
    checks = [(_JGE_K, "eperm", _X32_BIT), (_JEQ_K, "enosys", _CLONE3),
              (_JEQ_K, "clone", _CLONE)] + [(_JEQ_K, "eperm", nr) for nr in sorted(DENIED.values())]
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, _RET_KILL),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    allow = len(prog) + len(checks)
    target = {"eperm": allow + 1, "enosys": allow + 2, "clone": allow + 3}
    for code, to, k in checks:
        prog.append((code, target[to] - len(prog) - 1, 0, k))
    prog += [
        (_RET_K, 0, 0, _RET_ALLOW),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
        (_LD_W_ABS, 0, 0, 16),  # low 32 bits of args[0]: clone's flags
        (_JSET_K, 0, 1, _NS_FLAGS),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]
    return prog


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_compiled: tuple[ctypes.Array, _Prog] | None = None


def _compile() -> tuple[ctypes.Array, _Prog]:
    """Built once (in the zygote, before forking), so installing it in an
    instance is a single prctl."""
    global _compiled
    if _compiled is None:
        prog = program()
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        buf = ctypes.create_string_buffer(raw, len(raw))
        _compiled = (buf, _Prog(len(prog), ctypes.cast(buf, ctypes.c_void_p)))
    return _compiled


def install() -> None:
    """Load the filter into this process (needs no_new_privs or CAP_SYS_ADMIN)."""
    ok, why = supported()
    if not ok:
        raise OSError(errno.ENOSYS, why)
    _, fprog = _compile()
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp: {errno.errorcode.get(e, e)}")


if platform.machine() == "x86_64":
    _compile()
