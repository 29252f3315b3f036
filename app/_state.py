"""Page state that lives in the URL, so that a view can be shared by copying the address.

Each control is a :class:`Param`: its URL name, its widget and how to read a URL value (bad values
fall back to the default, numbers are clamped into range and snapped to the slider's step, so a
hand-edited address never crashes the app). The flow on every run of a page::

    bind(PARAMS, page)            # widget keys filled from the shared store, first from the URL
    values = {p.key: p.widget(st.sidebar, page) for p in PARAMS}
    sync_url(PARAMS)              # the URL says what the page shows (defaults left out)

Values are kept in one store in ``st.session_state`` shared by all pages, so s and m set on the
margin explorer are the ones the gallery shows. Widget keys are per page (Streamlit forgets a
widget's state when its page is not shown); a change is copied to the store by the widget's
callback, before the script reruns.

A page may split what it shows into keyed fragments (``st.fragment(key=...)``) that read the values
from the store (:func:`values`) and give each control the fragments it affects
(``widget(..., reruns=...)``, see :func:`fragment_reruns`): a change then reruns only those
fragments, and the callback writes the new value into the URL itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import streamlit as st

Kind = Literal["float", "int", "bool", "choice", "multi", "text"]
_STORE = "_lab_state"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One control of a page and its URL query parameter ``key``."""

    key: str
    label: str
    kind: Kind
    default: Any
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    help: str | None = None
    fmt: str | None = None

    def __post_init__(self) -> None:
        if self.kind in ("float", "int") and (self.lo is None or self.hi is None or self.step is None):
            raise ValueError(f"numeric parameter {self.key!r} needs lo, hi and step")
        if self.kind in ("choice", "multi") and not self.choices:
            raise ValueError(f"parameter {self.key!r} needs choices")

    # -- URL <-> value ------------------------------------------------------------------------
    def parse(self, raw: str | None) -> Any:
        """The value a URL string stands for; the default when it is absent or unusable."""
        if raw is None:
            return self.default
        raw = raw.strip()
        if self.kind == "bool":
            low = raw.lower()
            return True if low in _TRUE else False if low in _FALSE else self.default
        if self.kind == "choice":
            return raw if raw in self.choices else self.default
        if self.kind == "text":
            return raw
        if self.kind == "multi":
            picked = [c for c in dict.fromkeys(raw.split(",")) if c in self.choices]
            return picked if picked or raw == "" else list(self.default)
        try:
            value = float(raw)
        except ValueError:
            return self.default
        if not math.isfinite(value):
            return self.default
        return self.clamp(value)

    def clamp(self, value: float) -> float | int:
        """``value`` clamped to [lo, hi] and snapped to the step grid."""
        assert self.lo is not None and self.hi is not None and self.step is not None
        value = min(max(value, self.lo), self.hi)
        value = self.lo + round((value - self.lo) / self.step) * self.step
        value = min(value, self.hi)
        if self.kind == "int":
            return int(round(value))
        decimals = max(0, -math.floor(math.log10(self.step)) + 2) if self.step < 1 else 6
        return float(round(value, decimals))

    def encode(self, value: Any) -> str:
        """The URL string for ``value``."""
        if self.kind == "bool":
            return "1" if value else "0"
        if self.kind == "multi":
            return ",".join(value)
        if self.kind in ("float", "int"):
            return f"{value:g}"
        return str(value)

    # -- widget -------------------------------------------------------------------------------
    def widget_key(self, page: str) -> str:
        return f"{page}:{self.key}"

    def widget(self, container: Any, page: str, reruns: Sequence[str] | None = None) -> Any:
        """Draw this control in ``container`` (st or st.sidebar, a column …); returns its value.

        ``reruns``: the keys of the page's fragments that show this control's effect; a change then
        reruns only those (and writes the value into the URL), not the whole page."""
        key = self.widget_key(page)
        common = dict(key=key, help=self.help, on_change=_commit,
                      args=(self, key, tuple(reruns) if reruns else None))
        if self.kind in ("float", "int"):
            cast = int if self.kind == "int" else float
            return container.slider(self.label, cast(self.lo), cast(self.hi), step=cast(self.step),
                                    format=self.fmt, **common)
        if self.kind == "bool":
            return container.toggle(self.label, **common)
        if self.kind == "text":
            return container.text_input(self.label, **common)
        def fmt(choice: str) -> str:
            return self.labels.get(choice, choice)

        if self.kind == "choice":
            if len(self.choices) <= 3:
                return container.radio(self.label, self.choices, format_func=fmt, horizontal=True,
                                       **common)
            return container.selectbox(self.label, self.choices, format_func=fmt, **common)
        return container.multiselect(self.label, self.choices, format_func=fmt, **common)


def _store() -> dict[str, Any]:
    if _STORE not in st.session_state:
        st.session_state[_STORE] = {}
    return st.session_state[_STORE]


def _commit(param: Param, widget_key: str, reruns: tuple[str, ...] | None) -> None:
    """Widget callback: copy the new value into the shared store (runs before the rerun); with
    ``reruns``, also into the URL, and rerun only those fragments."""
    _store()[param.key] = st.session_state[widget_key]
    if reruns:
        sync_url([param])
        st.rerun(list(reruns))


def bind(params: Sequence[Param], page: str) -> None:
    """Before a page draws its widgets: give each one its value from the store, which is filled
    from the URL (validated) the first time a parameter is seen in this session."""
    store = _store()
    for p in params:
        if p.key not in store:
            store[p.key] = p.parse(st.query_params.get(p.key))
        value = store[p.key]
        st.session_state[p.widget_key(page)] = list(value) if p.kind == "multi" else value


def value(key: str, default: Any = None) -> Any:
    """The current value of parameter ``key`` from the shared store (e.g. set on another page)."""
    return _store().get(key, default)


def values(params: Sequence[Param]) -> dict[str, Any]:
    """The current value of each of ``params`` by key (after :func:`bind`)."""
    store = _store()
    return {p.key: store.get(p.key, p.default) for p in params}


def fragment_reruns(reads: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """``{fragment key: the controls it reads}`` turned into ``{control: the fragments to rerun}``,
    for :meth:`Param.widget`'s ``reruns``."""
    out: dict[str, tuple[str, ...]] = {}
    for fragment, keys in reads.items():
        for key in keys:
            out[key] = (*out.get(key, ()), fragment)
    return out


def set_value(key: str, new: Any) -> None:
    """Set parameter ``key`` in the shared store; its widget shows it from the next run of the page
    (Streamlit forbids changing a drawn widget's value within the run that drew it)."""
    _store()[key] = new


def sync_url(params: Sequence[Param]) -> None:
    """Write the page's state into the URL: non-default values only, so addresses stay short."""
    store = _store()
    for p in params:
        current = store.get(p.key, p.default)
        is_default = (list(current) == list(p.default)) if p.kind == "multi" else current == p.default
        if is_default:
            if p.key in st.query_params:
                del st.query_params[p.key]
            continue
        encoded = p.encode(current)
        if st.query_params.get(p.key) != encoded:
            st.query_params[p.key] = encoded
