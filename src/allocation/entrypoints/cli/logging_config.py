"""Logging, configured once per process: readable text by default, JSON lines on request."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from allocation.adapters.this_process import ThisProcess
from allocation.service_layer import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]%(context)s %(message)s"


class ContextFilter(logging.Filter):
    """Adds the process id and the bound request/message ids to every record
    (``context`` for text output)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.process = ThisProcess.pid
        fields = log_context.current()
        if fields:
            record.__dict__.update(fields)
            record.context = "".join(f" {k}={v}" for k, v in fields.items())
        else:
            record.context = ""
        return True


# Every C0 and C1 control character and DEL, written as a visible escape: a request
# path or header carrying CR, LF, NUL or a terminal escape can neither start a
# forged line nor hide or recolour one.
_ESCAPES = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code), f"\\x{code:02x}")
    for code in [*range(0x20), *range(0x7F, 0xA0)]
} | {ord("\\"): "\\\\"}


def escape_controls(text: str) -> str:
    """The text with control characters (and backslashes) escaped: one line, safe to print."""
    if "\\" not in text and text.isprintable():  # the usual line: nothing to escape
        return text
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """The text format: one line per record whatever the message holds (a traceback
    follows on lines of its own), with the timestamp's date and time formatted once
    a second rather than on every line (every request writes one). ``format`` writes
    TEXT_FORMAT out as code, which costs a third of the generic formatting; a test
    holds the two to the same output."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        context = getattr(record, "context", "")
        line = escape_controls(
            f"{self.formatTime(record)} {record.levelname} {record.name}"
            f" [{record.process}]{context} {record.message}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line

    def formatException(self, ei: Any) -> str:
        """The traceback, every line indented: an exception's message may carry what a
        client sent, and no line of it may pass for a record of its own (a record
        starts with its timestamp)."""
        lines = super().formatException(ei).split("\n")
        return "\n".join("  " + escape_controls(line) for line in lines)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp, self._second = super().formatTime(record, "%Y-%m-%d %H:%M:%S"), second
        return f"{self._stamp},{int(record.msecs):03d}"


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={},
            reserved_attrs=[*_STANDARD_ATTRIBUTES, "context"],
        )
    return TextFormatter()


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Standard error, a line per record, handed to the system (a write call: most of
    what a line costs a request) at most every FLUSH_EVERY_SECONDS while lines keep
    coming; at once for a warning or worse, and for the first line after a quiet
    spell. A thread hands over what a burst's last lines left, so none waits longer,
    and closing (at exit, by logging.shutdown) hands over the rest. A process killed
    outright loses at most the last FLUSH_EVERY_SECONDS of INFO lines."""

    FLUSH_EVERY_SECONDS = 0.1

    def __init__(self) -> None:
        # Its own buffered stream on the descriptor: sys.stderr passes on every line.
        encoding = sys.stderr.encoding or "utf-8"
        stream = open(  # noqa: SIM115 - lives as long as the process
            sys.stderr.fileno(), "w", encoding=encoding, errors="backslashreplace", closefd=False
        )
        super().__init__(stream)
        self._urgent = False
        self._due = 0.0  # when the next write is owed
        self._behind = False  # lines written to the buffer but not handed over
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._urgent = record.levelno >= logging.WARNING
        super().emit(record)  # writes the line, then calls flush()

    def flush(self) -> None:
        now = time.monotonic()
        if self._urgent or now >= self._due:
            self.flush_now()
            self._due = now + self.FLUSH_EVERY_SECONDS
            return
        self._behind = True
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._keep_flushing, daemon=True)
            self._flusher.start()

    def flush_now(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._behind = False
            super().flush()

    def close(self) -> None:
        self.flush_now()
        super().close()

    def _keep_flushing(self) -> None:
        while True:
            time.sleep(self.FLUSH_EVERY_SECONDS)
            if self._behind:
                self.flush_now()


def configure(level: str, log_format: str, batched: bool = False) -> None:
    """The root logger, to standard error; ``batched`` (the API's workers, which write
    a line per request) hands lines to the system in batches: BatchedStreamHandler."""
    # The logging HOWTO's optimisations for what no line here shows: the caller's
    # file and line (a stack walk per record), the thread and the process name; the
    # process id comes from ContextFilter, which asks the system once.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = False
    handler = BatchedStreamHandler() if batched else logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, root.level))


# Libraries that narrate their routine work at INFO: Alembic describes its plugins
# and its migration context whenever the schema's revision is read (every /ready).
# `allocation migrate` turns the migration's own lines back on.
QUIET_LOGGERS = {"alembic": logging.WARNING}


def server_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """The HTTP server's own loggers, formatted like ours (a logging.config dict)."""
    formatter_spec: dict[str, Any] = (
        {"()": f"{__name__}.json_formatter"}
        if log_format == "json"
        else {"()": f"{__name__}.TextFormatter"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"default": formatter_spec},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "_granian": {"level": level, "handlers": [], "propagate": True},
            # Our own request log line carries the request id; the server's is off.
            "granian.access": {"level": "WARNING", "handlers": [], "propagate": True},
            **{
                name: {"level": logging.getLevelName(quiet), "handlers": [], "propagate": True}
                for name, quiet in QUIET_LOGGERS.items()
            },
        },
    }


def json_formatter() -> logging.Formatter:
    return formatter("json")


_STANDARD_ATTRIBUTES = [
    "args",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "msg",
    "pathname",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]
