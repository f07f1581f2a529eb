"""Self-contained HTML reports (figures embedded as base64 PNG) and JSON output helpers."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.io import storage as st

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["Section", "html_report", "json_bytes", "to_jsonable", "write_files"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into strict-JSON values.

    Parameters
    ----------
    obj : object
        Nested dicts, lists, numpy values.

    Returns
    -------
    object
        The same structure with ``NaN``/``inf`` as ``None`` and numpy types as Python types.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def json_bytes(obj: Any) -> bytes:
    """Strict JSON (no NaN) of :func:`to_jsonable` (obj), indented, as UTF-8 bytes."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False).encode()


@dataclass
class Section:
    """One section of a report.

    Attributes
    ----------
    title : str
        Heading.
    text : list of str
        Paragraphs (plain text, escaped).
    tables : list of (list of str, list of list)
        ``(header, rows)`` tables.
    images : list of (str, bytes)
        ``(caption, PNG bytes)`` figures, embedded inline.
    """

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        return f"{f:.4g}"
    return html.escape(str(v))


def html_report(title: str, sections: Sequence[Section], subtitle: str = "") -> bytes:
    """Render a self-contained HTML page.

    Parameters
    ----------
    title : str
        Page title.
    sections : sequence of Section
        Content in order.
    subtitle : str
        A line under the title (e.g. model id, inputs).

    Returns
    -------
    bytes
        UTF-8 HTML with every figure inlined as a ``data:image/png;base64`` URI.
    """
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}"
        "figcaption{color:#555;font-size:.9em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        out.append(f"<p>{html.escape(subtitle)}</p>")
    for sec in sections:
        out.append(f"<h2>{html.escape(sec.title)}</h2>")
        out.extend(f"<p>{html.escape(t)}</p>" for t in sec.text)
        for header, rows in sec.tables:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                       + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                       for row in rows)
            out.append("</table>")
        for caption, png in sec.images:
            b64 = base64.b64encode(png).decode()
            out.append(f'<figure><img alt="{html.escape(caption)}" '
                       f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}'
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out).encode()


def write_files(out: str, files: Mapping[str, bytes], storage: StorageConfig | None = None
                ) -> list[str]:
    """Write the outputs of an evaluation stage into one folder.

    Parameters
    ----------
    out : str
        Output folder URL.
    files : mapping of str to bytes
        File name → content.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    list of str
        The names written, sorted.
    """
    for name, data in files.items():
        st.write_bytes(st.join(out, name), data, storage)
    return sorted(files)
