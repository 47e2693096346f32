"""Safe output writing: atomic files, a per-folder lock, and checks before anything is written."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import onnx

from ..errors import OutputError
from .external import save_external, write_serialized
from .model import is_large

__all__ = ["atomic_write_bytes", "atomic_write_text", "save_model_file", "output_lock", "check_output_dir", "os_error"]


def os_error(path, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"the disk is full while writing {path}: free space or choose another output folder; "
                           "nothing was left half-written")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"no permission to write {path}: choose a folder you can write to (--output)")
    return OutputError(f"cannot write {path}: {e.strerror or e}: check the output folder")


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers see the old file or the complete new one, never a partial one; on any error the
    temporary file is removed and :class:`OutputError` says what happened.
    """
    _atomic_write(path, lambda f: f.write(data))


def _atomic_write(path, write) -> None:
    """:func:`atomic_write_bytes` with ``write(file)`` writing the content."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600: give the file the mode open() would
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise os_error(path, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_model_file(model: onnx.ModelProto, path, *, weights: onnx.ModelProto | None = None) -> None:
    """Save a model atomically; models over 2 GB get their weights in ``<name>.data`` beside it.

    ``weights``: the model whose initializers hold the data of ``model``'s left-out ones (``model`` a
    :func:`~amct_nb.ir.model.light_copy` of it)."""
    path = Path(path)
    if weights is None and not is_large(model):
        _atomic_write(path, lambda f: write_serialized(model, f))  # a weight at a time: no copy of the model
        return
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        data_name = path.name + ".data"
        save_external(model, stage / path.name, data_name, weights)
        for f in (stage / data_name, stage / path.name):
            if f.exists():
                os.chmod(f, _FILE_MODE)
        if (stage / data_name).exists():
            os.replace(stage / data_name, path.parent / data_name)
        os.replace(stage / path.name, path)
    except OSError as e:
        raise os_error(path, e) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_output_dir(outdir, input_model=None) -> Path:
    """Refuse output folders that cannot be written or that hold the input model."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"the output path {out} is a file, not a folder: choose a folder (--output)")
    if input_model is not None and isinstance(input_model, (str, os.PathLike)):
        src = Path(input_model).resolve()
        try:
            inside = src.is_relative_to(out.resolve())
        except (OSError, ValueError):
            inside = False
        if inside:
            raise OutputError(
                f"the output folder {out} holds the input model {src.name}; amct-nb never writes where a "
                "run could overwrite or mix with the model it reads: choose another output folder"
            )
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"no permission to write in {probe}: choose a folder you can write to (--output)")
    return out


@contextmanager
def output_lock(outdir):
    """Hold ``outdir/.amct-nb.lock`` while writing; a second concurrent run gets a clear error."""
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(out, e) from e
    lock = out / ".amct-nb.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = None
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pass
            if pid and _alive(pid):
                raise OutputError(
                    f"another amct-nb run (pid {pid}) is writing to {out}: wait for it to finish or "
                    "choose another output folder"
                ) from None
            try:  # stale lock from a run that died
                lock.unlink()
            except OSError:
                pass
        except OSError as e:
            raise os_error(out, e) from e
    else:
        raise OutputError(f"cannot lock {out}: remove {lock} if no other run uses the folder")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield out
    finally:
        try:
            lock.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
