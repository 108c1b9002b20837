"""Each app's persistent data directory (``resources.diskMB``, ``$SKIFF_DATA_DIR``).

Threat model: app code is hostile. Its data directory is the one place it can
write that outlives an instance, so it must not grow past its quota (filling
the host's disk would stop every app), must be seen by that app alone, and
must never let the platform follow a link the app planted.

Mechanism, measured on this machine (root, kernel 6.18, ext4 host): one ext4
image per app, ``$SKIFF_HOME/data/<app>.ext4``, sparse, made with mkfs.ext4
(~60 ms for 64 MiB; root directory owned by the app's uid), loop-mounted by
the platform at ``$SKIFF_HOME/data/<app>`` (~0.1 s) with the loop device's
auto-clear, so the device goes when its last mount does. The file system
itself is the quota: a write past it fails with ENOSPC in the app and nowhere
else (a dd of 30 MiB into a 16 MiB image stopped at 13 MiB). Instances mount
the same device inside their own mount namespace (see
``sandbox._data_dir_entries``); ``$SKIFF_HOME/data`` is 0700 and no other
app's root holds any path of it, so another app finds nothing at the path.

Without root (no loop devices, no mount namespace) the data directory is a
plain directory and **no quota is enforced**; ``quota`` says which is in force.

A volume is kept across revisions and restarts; a larger ``diskMB`` grows it
the next time it is mounted (at the server's next start: see ``_grow``); a
smaller one keeps the size it has (shrinking could lose data). The archive packs its files (no links followed, none restored outside
it) and a restore unpacks them into a new volume before the release step runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

from skiff.errors import DeployError
from skiff.instance.isolation import volumes_supported


def _mount_sources() -> dict[str, str]:
    """Mount point -> source, from this process's mountinfo."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            point = fields[4].replace("\\040", " ")
            out[point] = right.split()[1]
    return out


def run_tool(*argv: str) -> None:
    """Run a file system tool (mkfs, mount...); its complaint becomes an OSError."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise OSError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip()}")


class DataDirs:
    """The data directories of this node's apps (blocking methods: call off the loop)."""

    def __init__(self, home: Path, *, root: bool) -> None:
        self.base = home / "data"
        self.volumes = volumes_supported(root)
        self.quota = ("an ext4 image per app on a loop device (ENOSPC past diskMB)"
                      if self.volumes else "none: a plain directory (needs root for a quota)")
        self._lock = threading.Lock()
        self._devices: dict[str, str] = {}  # app -> loop device mounted at its path

    def path(self, app: str) -> Path:
        return self.base / app

    def _image(self, app: str) -> Path:
        return self.base / f"{app}.ext4"

    def ensure(self, app: str, disk_mb: int, uid: int) -> tuple[Path, str]:
        """The app's data directory, made or mounted as needed: (path, loop device or "")."""
        with self._lock:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.path(app)
            if not self.volumes:
                if not path.is_dir():
                    path.mkdir(mode=0o700)
                    os.chown(path, uid, uid)
                return path, ""
            image = self._image(app)
            try:
                if not image.exists():
                    self._make(image, disk_mb, uid)
                device = self._devices.get(app) or self._mounted(path)
                if device is None:
                    if image.stat().st_size < disk_mb * 1024 * 1024:
                        self._grow(image, disk_mb)
                    path.mkdir(mode=0o700, exist_ok=True)
                    run_tool("mount", "-o", "loop,nosuid,nodev,noexec", str(image), str(path))
                    device = self._mounted(path)
                    if device is None:
                        raise OSError(f"{image} mounted, but not listed at {path}")
                self._devices[app] = device
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DeployError(f"app {app}: its data directory ({disk_mb} MiB) could not be "
                                  f"made: {exc}; check free space under {self.base}",
                                  code="data_dir_failed") from None
            return path, device

    @staticmethod
    def _make(image: Path, disk_mb: int, uid: int) -> None:
        tmp = image.with_name(f".{image.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        try:
            os.truncate(tmp, disk_mb * 1024 * 1024)  # sparse: only what the app writes is used
            # -m 0: nothing reserved for root (the app's quota is all the app's);
            # root_owner: the app's uid owns the top directory
            run_tool("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{uid}",
                 "-L", "skiff-data", str(tmp))
            tmp.rename(image)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _grow(image: Path, disk_mb: int) -> None:
        """A larger diskMB, while nothing has the volume mounted: growing a mounted
        ext4 needs CAP_SYS_RESOURCE, which a container's root may lack (this one
        does), so a running app's volume grows when the server next mounts it."""
        os.truncate(image, disk_mb * 1024 * 1024)
        run_tool("e2fsck", "-f", "-p", str(image))
        run_tool("resize2fs", str(image))

    def _mounted(self, path: Path) -> str | None:
        source = _mount_sources().get(str(path))
        return source if source and source.startswith("/dev/loop") else None

    def usage(self, app: str) -> tuple[int, int] | None:
        """(bytes used, bytes of quota) of a volume, or None."""
        with self._lock:
            if app not in self._devices:
                return None
            st = os.statvfs(self.path(app))
            return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize

    def pack(self, app: str) -> bytes | None:
        """The directory's files as a tar.gz (links stored as links, never followed);
        None when the app has no data directory here."""
        path = self.path(app)
        if not path.is_dir():
            return None
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for entry in sorted(os.listdir(path)):
                if entry != "lost+found":
                    tar.add(path / entry, arcname=entry, recursive=True)
        return buf.getvalue()

    def unpack(self, app: str, data: bytes, disk_mb: int, uid: int) -> list[str]:
        """Archived files back into a (new) data directory, owned by the app's uid.
        Returns what was left out: members tarfile's data filter refuses (a path or
        link leading outside the directory, a device), which the app may have made
        and the platform will not write."""
        path, _device = self.ensure(app, disk_mb, uid)
        left_out: list[str] = []

        def only_inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
            try:
                return tarfile.data_filter(member, dest)
            except tarfile.FilterError:
                left_out.append(member.name)
                return None

        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(path, filter=only_inside)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DeployError(f"app {app}: its archived data does not fit or unpack ({exc}); "
                              "raise resources.diskMB, or restore from a copy of the archive",
                              code="archive_invalid") from None
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)
        return left_out

    def _unmount(self, app: str) -> None:
        device = self._devices.pop(app, None) or self._mounted(self.path(app))
        if device is not None:
            # lazy: a file the platform still has open there must not keep it mounted
            subprocess.run(["umount", "-l", str(self.path(app))], capture_output=True,
                           timeout=60)

    def remove(self, app: str) -> None:
        """The app is deleted (after its archive is written): its data goes."""
        with self._lock:
            if self.volumes:
                self._unmount(app)
                self._image(app).unlink(missing_ok=True)
            shutil.rmtree(self.path(app), ignore_errors=True)

    def close(self) -> None:
        """At shutdown: unmount every volume (the images stay for the next start)."""
        with self._lock:
            for app in list(self._devices):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._unmount(app)
