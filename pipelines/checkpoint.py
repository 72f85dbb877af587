"""Run folders and checkpoints of :mod:`dali_mixup.pipelines.train`.

Every training run writes into its own folder, ``OUT/NAME`` (``--out``, ``--name``)::

    OUT/NAME/config.json    the run's configuration (written when the run starts)
    OUT/NAME/last.pt        the training state: after every epoch and when the run is stopped (Ctrl-C)
    OUT/NAME/best.pt        the weights of the epoch with the best validation accuracy
    OUT/NAME/results.json   history, final and best accuracy, throughput (at the end)
    OUT/NAME/curves.png     learning curves (at the end)

``last.pt`` holds the model, optimizer and learning-rate scheduler states, the epoch and step
reached, torch's random state, every rank's DALI pipeline checkpoints (the readers' positions
and shuffles, the augmentation and mixing operators' random states) and the run's
configuration; ``dali-mixup train --resume OUT/NAME`` (or ``--resume auto``) continues from it
and gives the same weights as a run that was never stopped (same machine, same number of
ranks).

``best.pt`` holds the model's ``state_dict`` and what is needed to rebuild the model; load it
with :func:`dali_mixup.pipelines.evaluate.load_trained`.

Both are written atomically (a temporary file in the same folder, then :func:`os.replace`): a
run stopped while writing leaves the previous file whole. They hold only tensors, numbers,
strings, lists and dicts (DALI checkpoints as base64 text, the configuration as JSON-able
values), so they load with ``torch.load(path, weights_only=True)``: nothing in the file runs.
"""
from __future__ import annotations

import base64
import json
import os

from dali_mixup.tools.usage import UsageError

#: what the ``format`` entry of each kind of file holds
TRAINING_FORMAT = "dali-mixup training checkpoint"
WEIGHTS_FORMAT = "dali-mixup model weights"
VERSION = 1

#: the files of a run folder (``--overwrite`` removes these, and only these)
RUN_FILES = ("config.json", "last.pt", "best.pt", "results.json", "curves.png")

_REQUIRED = {
    TRAINING_FORMAT: ("epoch", "step_in_epoch", "model", "optimizer", "scheduler", "dali",
                      "config", "history", "world_size"),
    WEIGHTS_FORMAT: ("model", "config", "classes", "in_channels", "image_size", "epoch"),
}


class RunError(UsageError):
    """A run folder or checkpoint the user named cannot be used as asked (one-line message)."""


class CheckpointError(RunError):
    """A checkpoint file that cannot be used: unreadable, truncated, or not dali-mixup's."""


class CheckpointNotFound(RunError, FileNotFoundError):
    """The checkpoint (or run folder) to resume from does not exist."""


class RunFolderExists(RunError, FileExistsError):
    """A new run would write over an existing run's folder."""


def encode_dali(checkpoints) -> list[str]:
    """DALI pipeline checkpoints (``bytes``) as base64 text (loadable with ``weights_only``)."""
    return [base64.b64encode(c).decode("ascii") for c in checkpoints]


def decode_dali(texts) -> list[bytes]:
    """The inverse of :func:`encode_dali`."""
    return [base64.b64decode(t.encode("ascii")) for t in texts]


def save_atomic(obj, path: str) -> str:
    """``torch.save(obj)`` to ``path`` through a temporary file and :func:`os.replace`."""
    import torch

    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json_atomic(obj, path: str) -> str:
    """``json.dump(obj)`` to ``path`` through a temporary file and :func:`os.replace`."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str, expected: str = TRAINING_FORMAT) -> dict:
    """Load a checkpoint written by ``dali-mixup train`` with ``torch.load(weights_only=True)``.

    Args:
        path: ``last.pt`` / ``best.pt``, or a run folder (then its ``last.pt`` for a training
            checkpoint, its ``best.pt`` for model weights).
        expected: :data:`TRAINING_FORMAT` (resume) or :data:`WEIGHTS_FORMAT` (evaluation);
            a training checkpoint is accepted where weights are expected (its model is used).

    Raises:
        CheckpointNotFound: no such file (the message names it).
        CheckpointError: the file is truncated or not a checkpoint of this kind; the message
            names the file and what was expected.
    """
    import pickle

    import torch

    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt" if expected == TRAINING_FORMAT else "best.pt")
    if not os.path.isfile(path):
        raise CheckpointNotFound(f"checkpoint {path!r} does not exist (expected a {expected} "
                                f"file written by dali-mixup train, or its run folder)")
    what = f"a {expected} (a file written by dali-mixup train)"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            KeyError, AttributeError, TypeError) as e:
        if "unsupported global" in str(e).lower():
            import re

            name = re.search(r"GLOBAL (\S+)", str(e))
            raise CheckpointError(f"checkpoint {path!r} holds objects other than tensors and plain "
                                  f"values ({name.group(1) if name else 'a Python object'}: "
                                  f"loading it would run code from the file); expected "
                                  f"{what}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if first.lower().startswith("weights only load failed"):
            first = "not pickled tensors and plain values"
        raise CheckpointError(f"checkpoint {path!r} cannot be read: it is truncated, damaged or "
                              f"not a PyTorch checkpoint ({first[:200]}); expected {what}") from None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    accepted = (TRAINING_FORMAT, WEIGHTS_FORMAT) if expected == WEIGHTS_FORMAT else (TRAINING_FORMAT,)
    if fmt not in accepted:
        got = (f"format {fmt!r}" if fmt is not None else
               f"a {type(obj).__name__}" + (f" with keys {sorted(map(str, obj))[:8]}"
                                            if isinstance(obj, dict) else ""))
        raise CheckpointError(f"checkpoint {path!r} is not {what}: it holds {got}")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has version {obj.get('version')!r}; this "
                              f"dali-mixup reads version {VERSION}")
    missing = [k for k in _REQUIRED[fmt] if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path!r} lacks {missing}; expected {what}")
    obj["path"] = path
    return obj


def prepare_run_folder(folder: str, *, overwrite: bool = False) -> str:
    """Create the run folder of a new run.

    An existing folder holding a run's files is an error unless ``overwrite`` (then those
    files, and only those, are removed). A folder with only ``config.json`` holds a run that
    stopped before its first epoch (e.g. on a data error): it is reused.
    """
    folder = os.path.abspath(folder)
    present = [f for f in RUN_FILES if os.path.exists(os.path.join(folder, f))]
    if present not in ([], ["config.json"]) and not overwrite:
        raise RunFolderExists(
            f"run folder {folder!r} already holds a run ({', '.join(present)}); pass --overwrite "
            f"to replace it, --resume {folder} to continue it, or another --name / --out")
    for f in present:
        os.remove(os.path.join(folder, f))
    os.makedirs(folder, exist_ok=True)
    return folder


def find_resume(resume: str, folder: str) -> str | None:
    """The checkpoint to resume from: ``resume`` itself (a file or a run folder), or for
    ``"auto"`` the run folder's ``last.pt`` when there is one (None: start afresh)."""
    if resume == "auto":
        last = os.path.join(folder, "last.pt")
        return last if os.path.isfile(last) else None
    path = os.path.join(resume, "last.pt") if os.path.isdir(resume) else resume
    if not os.path.isfile(path):
        raise CheckpointNotFound(f"--resume {resume!r}: no checkpoint {path!r} (expected a "
                                f"last.pt written by dali-mixup train, its run folder, or 'auto')")
    return path
