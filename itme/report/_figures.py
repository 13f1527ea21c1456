"""Find the figures of a run and inline them as ``data:`` URIs.

A figure's section is the one its stage declares (``qc_gates_<sample>.png`` goes to the
``qc`` section); figures no stage declares go to "Other results". When a
figure exists as both PNG and SVG, the PNG is embedded (its size does not grow with the
number of points drawn) and the SVG is linked. SVG is embedded as an ``<img>`` data URI,
never as inline markup, so a script or external reference inside an SVG file is neither
run nor loaded by the browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

__all__ = ["Figure", "FigureIndex", "find_figures", "render_figure"]

#: figures larger than this are linked, not embedded (keeps the page loadable)
MAX_FIGURE_BYTES = 15_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


@dataclass
class Figure:
    """One figure of a run: its stem, section and the files found for it."""

    stem: str
    section: str
    files: dict[str, Path] = field(default_factory=dict)  # suffix -> path


@dataclass
class FigureIndex:
    """Figures grouped by section, plus files that are not figures we can embed."""

    by_section: dict[str, list[Figure]]
    unsupported: list[Path]


def find_figures(fig_dir: Path, section_of: Callable[[str], str]) -> FigureIndex:
    """Group ``fig_dir``'s PNG and SVG files by section (sorted by name).

    Hidden files (names starting with ``.``, e.g. temporary files of an atomic write) are
    ignored; any other file that is not PNG or SVG is listed in ``unsupported``.

    Parameters
    ----------
    fig_dir
        The run's ``figures/`` folder (may be missing).
    section_of
        The section of a figure's file stem (``"other"`` for figures no stage declares).

    Returns
    -------
    The :class:`FigureIndex`.
    """
    by_stem: dict[str, Figure] = {}
    unsupported: list[Path] = []
    if fig_dir.is_dir():
        for path in sorted(fig_dir.iterdir(), key=lambda p: p.name):
            if path.name.startswith(".") or not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix not in _MIME:
                unsupported.append(path)
                continue
            fig = by_stem.setdefault(path.stem, Figure(path.stem, section_of(path.stem)))
            fig.files[suffix] = path
    grouped: dict[str, list[Figure]] = {}
    for stem in sorted(by_stem):
        grouped.setdefault(by_stem[stem].section, []).append(by_stem[stem])
    return FigureIndex(grouped, unsupported)


def _looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return b"<svg" in head and (head.startswith(b"<?xml") or head.startswith(b"<"))


def _caption_of(fig: Figure, captions: dict[str, str]) -> str:
    if fig.stem in captions:
        return str(captions[fig.stem])
    words = fig.stem.split("_", 1)[1] if "_" in fig.stem else fig.stem
    return words.replace("_", " ").replace("-", " ").strip() or fig.stem


def _link(path: Path, label: str) -> str:
    href = "figures/" + path.name
    return f'<a href="{html.escape(quote(href), quote=True)}">{html.escape(label)}</a>'


def render_figure(fig: Figure, captions: dict[str, str]) -> tuple[str, bool]:
    """HTML ``<figure>`` for one figure, embedded as a ``data:`` URI when it can be.

    Parameters
    ----------
    fig
        The figure.
    captions
        Figure stem -> caption (default: the stem without its section prefix).

    Returns
    -------
    ``(html, embedded)``: a figure too large, unreadable or not what its suffix says is
    linked with a note instead (``embedded`` False).
    """
    chosen = fig.files.get(".png") or fig.files.get(".svg")
    suffix = chosen.suffix.lower()
    caption = html.escape(_caption_of(fig, captions))
    others = [_link(p, s.lstrip(".").upper()) for s, p in sorted(fig.files.items()) if p != chosen]
    problem = None
    data = b""
    try:
        size = chosen.stat().st_size
        if size > MAX_FIGURE_BYTES:
            problem = (
                f"{size / 1e6:.1f} MB is above the {MAX_FIGURE_BYTES / 1e6:.0f} MB embedding limit"
            )
        else:
            data = chosen.read_bytes()
    except OSError as exc:
        problem = f"could not be read ({type(exc).__name__})"
    if problem is None and suffix == ".png" and not data.startswith(_PNG_MAGIC):
        problem = "is not a PNG file"
    if problem is None and suffix == ".svg" and not _looks_like_svg(data):
        problem = "is not an SVG file"
    name = html.escape(chosen.name)
    anchor = html.escape(f"fig-{fig.stem}", quote=True)
    if problem is not None:
        links = " &middot; ".join([_link(chosen, chosen.name), *others])
        body = (
            f'<figure id="{anchor}" class="missing"><p class="note">Figure <code>{name}</code> '
            f"not embedded: {html.escape(problem)}. File: {links}</p>"
            f"<figcaption>{caption}</figcaption></figure>"
        )
        return body, False
    uri = f"data:{_MIME[suffix]};base64," + base64.b64encode(data).decode("ascii")
    extra = (" &middot; " + " &middot; ".join(others)) if others else ""
    body = (
        f'<figure id="{anchor}"><img src="{uri}" alt="{html.escape(fig.stem, quote=True)}">'
        f'<figcaption>{caption} <span class="file">({name}{extra})</span></figcaption>'
        "</figure>"
    )
    return body, True
