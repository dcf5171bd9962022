"""Loading a protocol: text in, a validated :class:`compiled.Protocol` out, or every problem at once.

Pure: nothing is read except the file named, nothing is evaluated, nothing is started.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.lang.compiled import Protocol
from controller.lang.errors import Issue, ProtocolError, read_utf8
from controller.lang.source import Source
from controller.protocol import raw
from controller.protocol.diagnostics import structure_issues
from controller.protocol.semantics import Semantics

TOP_KEYS = ", ".join(raw.ProtocolDecl.model_fields)


def loads_protocol(text: str, filename: str = "<string>", *, site: Any = None) -> Protocol:
    """Parse and validate protocol text; ``filename`` is used in messages only.

    The result's ``sha256`` is that of the UTF-8 encoded text; ``path`` stays empty.
    Raises :class:`ProtocolError` listing every problem found.
    """
    protocol = _compile(text, filename, site)
    return dataclasses.replace(protocol, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_protocol(path: str | Path, *, site: Any = None) -> Protocol:
    """Read, parse and validate a protocol file; the result carries its path and the
    sha256 of its bytes (so a session records exactly what ran). With ``site`` (a
    :class:`controller.safety.site.Site`), its stimulation is checked against the site's
    devices and limits too.

    Raises :class:`ProtocolError` (every problem, as FILE:LINE:COL: message) or OSError.
    """
    path = Path(path)
    text, data = read_utf8(path, ProtocolError)
    protocol = _compile(text, str(path), site)
    return dataclasses.replace(protocol, path=str(path), sha256=hashlib.sha256(data).hexdigest())


def _compile(text: str, filename: str, site: Any = None) -> Protocol:
    source = Source(text, filename, skip=raw.TAGS)
    if source.root is None:
        if not source.issues:
            source.issues.append(
                Issue(filename, 1, 1, f"empty protocol file; expected a mapping with keys {TOP_KEYS}")
            )
        raise ProtocolError(source.issues)
    issues = list(source.issues)
    decl: raw.ProtocolDecl | None = None
    try:
        decl = raw.ProtocolDecl.model_validate(source.data)
    except ValidationError as exc:
        issues += structure_issues(exc, source)
    semantics = Semantics(source, site)
    issues += semantics.check()
    if issues or decl is None:
        raise ProtocolError(issues)
    return semantics.compile(decl)
