"""Confinement of client-supplied paths to the allowed roots, and race-safe opening, writing and removal inside them.

POSIX only: every file operation goes through directory descriptors opened one component at a time with
O_NOFOLLOW, so a symlink planted after a path was checked is never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError

from agent.servers._byte_names import unescape

MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX on common filesystems

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in a root must not hang the server; it changes nothing for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class PathError(ToolError):
    """A path was refused or could not be used; the message says which path and why."""


class PathRefused(PathError):
    """A path was refused because it leads outside the allowed roots (or there are none)."""


def _describe(err: OSError, shown: str) -> str:
    reasons = {
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a component of the path is not a directory",
        errno.EISDIR: "is a directory",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ELOOP: "symlink loop or a symlink where a real file or directory was expected",
        errno.EEXIST: "already exists",
        errno.ENOTEMPTY: "directory not empty",
        errno.EXDEV: "source and destination are on different filesystems",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "read-only filesystem",
        errno.ENAMETOOLONG: "file name too long",
        errno.EINVAL: "invalid argument (moving a directory into itself?)",
    }
    reason = reasons.get(err.errno) if err.errno is not None else None
    return f"{reason or err.strerror or 'operating system error'}: {shown}"


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def os_error(err: OSError, shown: str) -> PathError:
    """A PathError for an OSError met while working on `shown`."""
    return PathError(_describe(err, shown))


@dataclass(frozen=True)
class PathGuard:
    """The allowed roots (real, absolute paths) and every check a client path must pass before use."""

    roots: tuple[str, ...]

    @classmethod
    def from_arguments(cls, paths: Iterable[str | os.PathLike[str]]) -> tuple[PathGuard, list[str]]:
        """Roots from the command line: `~` expanded, made absolute and real; returns the guard and the problems."""
        roots: list[str] = []
        problems: list[str] = []
        for given in paths:
            real = os.path.realpath(os.path.expanduser(os.fspath(given)))
            if not os.path.isdir(real):
                problems.append(f"not a directory, skipped: {given}")
            elif real not in roots:
                roots.append(real)
        return cls(tuple(roots)), problems

    # -- checks ---------------------------------------------------------------------------------------

    def contains(self, real: str) -> bool:
        """Whether the real path `real` is one of the roots or lies below one (on a separator boundary)."""
        return self.root_of(real) is not None

    def root_of(self, real: str) -> str | None:
        """The deepest root that contains `real`, or None."""
        best = None
        for root in self.roots:
            prefix = root if root.endswith(os.sep) else root + os.sep
            if (real == root or real.startswith(prefix)) and (best is None or len(root) > len(best)):
                best = root
        return best

    def is_root(self, real: str) -> bool:
        return real in self.roots

    def display(self, real: str) -> str:
        """How to show a real path to the client: relative to the first root when below it, else absolute."""
        if self.roots:
            first = self.roots[0]
            if real == first:
                return "."
            prefix = first if first.endswith(os.sep) else first + os.sep
            if real.startswith(prefix):
                return real[len(prefix) :]
        return real

    def _absolute(self, path: str) -> str:
        if not self.roots:
            raise PathRefused("no allowed roots: this connection may not touch any file")
        if not isinstance(path, str) or path == "":
            raise PathError(f"empty path; relative paths start at {self.roots[0]}")
        if "\0" in path:
            raise PathError(f"path contains a NUL byte: {path!r}")
        try:
            size = len(path.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            raise PathError(f"path holds a UTF-16 surrogate that stands for no byte: {path!r}") from None
        if size > MAX_PATH_BYTES:
            raise PathError(f"path too long: {size} bytes (the limit is {MAX_PATH_BYTES})")
        for part in path.split("/"):
            if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise PathError(
                    f"file name too long: a component of {path[:80]!r}... exceeds {MAX_NAME_BYTES} bytes"
                )
        # Only "~" and "~/..." mean home: "~user" stays a literal name. No Unicode normalisation on purpose:
        # "／" (fullwidth solidus) or "‥" must stay ordinary characters, never turn into "/" or "..".
        absolute = self._join(path)
        if not os.path.lexists(absolute) and (decoded := unescape(path)) is not None:
            return self._join(decoded)  # a name shown with \xNN escapes for its undecodable bytes
        return absolute

    def _join(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = os.path.expanduser("~") + path[1:]
        return os.path.join(self.roots[0], path)

    def _refuse_outside(self, path: str, absolute: str, real: str) -> PathRefused:
        roots = ", ".join(self.roots)
        if self.contains(os.path.normpath(absolute)):
            return PathRefused(
                f"symlink target outside the allowed roots: {path} -> {real} (allowed roots: {roots})"
            )
        return PathRefused(f"outside the allowed roots: {path} (resolves to {real}; allowed roots: {roots})")

    def resolve(self, path: str, *, must_exist: bool = True) -> str:
        """The real path `path` names, every symlink followed, after checking that it stays inside the roots.

        Relative paths start at the first root. A path that does not exist yet (must_exist=False) is checked
        through the real path of its nearest existing ancestor, so a dangling symlink is judged by its target.
        """
        absolute = self._absolute(path)
        # Non-strict realpath also follows dangling symlinks and keeps going lexically past missing parts.
        real = os.path.realpath(absolute)
        if not self.contains(real):
            raise self._refuse_outside(path, absolute, real)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            if must_exist:
                raise PathError(f"no such file or directory: {path}") from None
            return real
        except OSError as err:
            raise os_error(err, path) from None
        if stat.S_ISLNK(st.st_mode):
            # realpath only stops on a symlink when the links loop.
            raise PathError(f"symlink loop: {path}")
        return real

    def locate(self, path: str) -> str:
        """The path of the directory entry itself (a final symlink is not followed), for moving and deleting."""
        absolute = self._absolute(path)
        parent, name = os.path.split(absolute.rstrip("/") or "/")
        if name in ("", ".", ".."):
            return self.resolve(path, must_exist=False)
        real = os.path.join(os.path.realpath(parent), name)
        if not self.contains(real):
            raise self._refuse_outside(path, absolute, real)
        return real

    # -- race-safe primitives ---------------------------------------------------------------------------

    def open_dir(self, real_dir: str, *, create: bool = False) -> int:
        """A descriptor for the directory `real_dir`, opened one component at a time from its root.

        Each step uses O_NOFOLLOW, so a component swapped for a symlink since the check fails instead of
        leading outside. With create=True, missing directories are made on the way (mkdir -p).
        """
        root = self.root_of(real_dir)
        if root is None:
            raise PathRefused(f"outside the allowed roots: {real_dir}")
        fd = os.open(root, _DIR_FLAGS)
        walked = root
        try:
            for part in os.path.relpath(real_dir, root).split(os.sep):
                if part in ("", "."):
                    continue
                walked = os.path.join(walked, part)
                if create:
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(part, fd):
                        raise PathRefused(
                            f"a directory on the path became a symlink after the check: {walked}"
                        ) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_file(self, real: str, shown: str) -> tuple[int, os.stat_result]:
        """A read descriptor and stat for the regular file `real`; refuses FIFOs, devices and late symlinks."""
        if self.is_root(real):
            raise PathError(f"is a directory: {shown} (use list_directory or directory_tree)")
        parent, name = os.path.split(real)
        try:
            dir_fd = self.open_dir(parent)
        except OSError as err:
            raise os_error(err, shown) from None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise PathRefused(f"changed into a symlink while being opened: {shown}") from None
            raise os_error(err, shown) from None
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise PathError(f"is a directory: {shown} (use list_directory or directory_tree)")
            raise PathError(f"not a regular file (a FIFO, socket or device): {shown}")
        return fd, st

    def write_atomic(
        self,
        real: str,
        data: bytes | Iterable[bytes],
        *,
        create_parents: bool = False,
        mode: int | None = None,
    ) -> bool:
        """Replace (or create) the file `real` with `data` atomically; returns whether it was created.

        The bytes go to a temporary file in the same directory, which then replaces the target by rename:
        readers see the old or the new content, and a symlink planted at the target is replaced, not
        followed. The mode of an existing file is kept unless `mode` is given.
        """
        parent, name = os.path.split(real)
        shown = self.display(real)
        if self.is_root(real):
            raise PathError(f"is a directory: {shown}")
        try:
            dir_fd = self.open_dir(parent, create=create_parents)
        except OSError as err:
            if err.errno == errno.ENOENT and not create_parents:
                raise PathError(
                    f"parent directory does not exist: {self.display(parent)} "
                    "(pass create_parents=true to make it)"
                ) from None
            raise os_error(err, self.display(parent)) from None
        try:
            try:
                old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise PathError(f"is a directory: {shown}")
            temp = f".{name[:200]}.{os.urandom(6).hex()}.tmp"
            fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=dir_fd)
            try:
                try:
                    if mode is not None:
                        os.fchmod(fd, mode)
                    elif old is not None and stat.S_ISREG(old.st_mode):
                        os.fchmod(fd, stat.S_IMODE(old.st_mode))
                    for piece in [data] if isinstance(data, bytes) else data:
                        view = memoryview(piece)
                        while view:
                            view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                # No fsync: rename makes the change atomic for readers; durability across power loss is the
                # filesystem's business, and an fsync per edit would cost milliseconds.
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                try:
                    os.unlink(temp, dir_fd=dir_fd)
                except OSError:
                    pass
                raise
        except OSError as err:
            raise os_error(err, shown) from None
        finally:
            os.close(dir_fd)
        return old is None

    def lstat_entry(self, real: str, shown: str) -> os.stat_result:
        """lstat of the entry `real` through its parent's descriptor (a root is stat'ed through its own)."""
        if self.is_root(real):
            fd = self.open_dir(real)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        parent, name = os.path.split(real)
        try:
            dir_fd = self.open_dir(parent)
        except OSError as err:
            raise os_error(err, shown) from None
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as err:
            raise os_error(err, shown) from None
        finally:
            os.close(dir_fd)

    def remove(self, real: str, *, recursive: bool) -> str:
        """Delete the entry `real` (a symlink itself, never its target); returns what it was."""
        shown = self.display(real)
        if self.is_root(real):
            raise PathError(f"refusing to delete an allowed root: {real}")
        parent, name = os.path.split(real)
        try:
            dir_fd = self.open_dir(parent)
        except OSError as err:
            raise os_error(err, shown) from None
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dir_fd)
                return "symlink" if stat.S_ISLNK(st.st_mode) else "file"
            if not recursive:
                raise PathError(
                    f"is a directory: {shown} (pass recursive=true to delete it with everything inside)"
                )
            import shutil

            # With dir_fd, rmtree works through descriptors and never follows symlinks inside the tree.
            shutil.rmtree(name, dir_fd=dir_fd)
            return "directory"
        except OSError as err:
            raise os_error(err, shown) from None
        finally:
            os.close(dir_fd)

    def move(self, source: str, destination: str, *, overwrite: bool) -> bool:
        """Rename the entry `source` to `destination` (real entry paths inside the roots); True if one was replaced."""
        shown_src, shown_dst = self.display(source), self.display(destination)
        if self.is_root(source):
            raise PathError(f"refusing to move an allowed root: {source}")
        if self.is_root(destination):
            raise PathError(f"refusing to replace an allowed root: {destination}")
        src_parent, src_name = os.path.split(source)
        dst_parent, dst_name = os.path.split(destination)
        fds: list[int] = []
        try:
            try:
                fds.append(self.open_dir(src_parent))
            except OSError as err:
                raise os_error(err, shown_src) from None
            try:
                fds.append(self.open_dir(dst_parent))
            except OSError as err:
                raise os_error(err, f"destination folder {self.display(dst_parent)}") from None
            src_fd, dst_fd = fds
            try:
                src_st = os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
            except OSError as err:
                raise os_error(err, shown_src) from None
            try:
                dst_st = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None:
                if os.path.samestat(src_st, dst_st):
                    raise PathError(f"source and destination are the same entry: {shown_src}")
                if not overwrite:
                    raise PathError(
                        f"destination already exists: {shown_dst} (pass overwrite=true to replace it)"
                    )
                if stat.S_ISDIR(dst_st.st_mode) and not stat.S_ISDIR(src_st.st_mode):
                    raise PathError(f"cannot replace the directory {shown_dst} with a file; delete it first")
            try:
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as err:
                if err.errno == errno.EXDEV and stat.S_ISREG(src_st.st_mode):
                    self._copy_across(src_fd, src_name, destination, src_st)
                    os.unlink(src_name, dir_fd=src_fd)
                    return dst_st is not None
                raise os_error(err, f"{shown_src} -> {shown_dst}") from None
            return dst_st is not None
        finally:
            for fd in fds:
                os.close(fd)

    def _copy_across(self, src_fd: int, src_name: str, destination: str, src_st: os.stat_result) -> None:
        # Only regular files are copied between filesystems; directories would need a race-safe copytree.
        fd = os.open(src_name, _READ_FLAGS, dir_fd=src_fd)

        def chunks() -> Iterable[bytes]:
            while chunk := os.read(fd, 1 << 20):
                yield chunk

        try:
            self.write_atomic(destination, chunks(), mode=stat.S_IMODE(src_st.st_mode))
        finally:
            os.close(fd)
