"""Command-line plumbing shared by the ``dali-mixup`` subcommands: user errors as one line.

* :class:`UsageError`: a mistake of the user (an argument out of range, a dataset folder
  that cannot be used). Its message is one line naming the argument or folder, the value and
  what is expected. The subcommands print it as ``PROG: error: MESSAGE`` and exit with status 2,
  without a traceback (``--debug`` shows the traceback instead).
* :class:`ArgumentParser`: ``argparse`` with that one-line error, ``--debug``, and a help text
  that shows every option's default (:class:`DefaultsHelpFormatter`).
* Range-checked ``type=`` functions for ``add_argument``: :func:`int_range`,
  :func:`float_range`.
"""
from __future__ import annotations

import argparse
import math
import sys

__all__ = ["UsageError", "ArgumentParser", "DefaultsHelpFormatter", "int_range", "float_range",
           "report"]


class UsageError(ValueError):
    """A user error: the message names the argument (or folder), the value and what is expected."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option with a value shows ``(default: ...)``, also those without a help text
    (argparse's own formatter only adds it to options that have one). Flags (``store_true``)
    and options whose help already speaks of its default are left as they are."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.default is argparse.SUPPRESS
                or action.nargs == 0 or "default" in text):
            return text
        default = "none" if action.default is None else "%(default)s"
        return f"{text} (default: {default})" if text else f"(default: {default})"


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``PROG: error: MESSAGE``, exit
    status 2, no usage block), with a ``--debug`` flag and defaults shown in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help="show the traceback of an error instead of a one-line message")

    def error(self, message):  # noqa: D401 (argparse's signature)
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' lists the options)\n")


def report(prog: str, error: BaseException, debug: bool = False) -> int:
    """Print ``error`` as ``PROG: error: MESSAGE`` on stderr and return 2; with ``debug``,
    re-raise it (the traceback)."""
    if debug:
        raise error
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def int_range(lo: int | None = None, hi: int | None = None):
    """``type=`` for an integer in ``[lo, hi]`` (either bound may be None)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            want = (f"an integer in [{lo}, {hi}]" if lo is not None and hi is not None
                    else f"an integer >= {lo}" if lo is not None else f"an integer <= {hi}")
            raise argparse.ArgumentTypeError(f"expected {want}, got {v}")
        return v
    parse.__name__ = "int"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False):
    """``type=`` for a finite float in the interval from ``lo`` to ``hi`` (open ends with
    ``lo_open`` / ``hi_open``; either bound may be None)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(v)
        if lo is not None:
            ok = ok and (v > lo if lo_open else v >= lo)
        if hi is not None:
            ok = ok and (v < hi if hi_open else v <= hi)
        if not ok:
            if lo is not None and hi is not None:
                want = f"a number in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
            elif lo is not None:
                want = f"a number {'>' if lo_open else '>='} {_fmt(lo)}"
            elif hi is not None:
                want = f"a number {'<' if hi_open else '<='} {_fmt(hi)}"
            else:
                want = "a finite number"
            raise argparse.ArgumentTypeError(f"expected {want}, got {text}")
        return v
    parse.__name__ = "float"
    return parse


def add_dataset_arguments(parser, *, data_help: str, default=None, metavar: str | None = "DIR") -> None:
    """The dataset arguments every command that reads an image folder shares: ``--data`` (with
    the command's own help), ``--val-split``, ``--no-check-images`` and ``--skip-bad-images``
    (see :mod:`dali_mixup.tools.layout` and :mod:`dali_mixup.tools.filecheck`)."""
    parser.add_argument("--data", metavar=metavar, default=default, help=data_help)
    parser.add_argument("--val-split", metavar="NAME", default=None,
                        help="the validation folder beside DIR/train (default: the first of val, "
                        "valid, validation, test that exists)")
    parser.add_argument("--no-check-images", dest="check_images", action="store_false",
                        help="skip the check of every image file before it is read (the check is "
                        "cached per folder)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave out image files that fail the check (default: stop and list them)")
