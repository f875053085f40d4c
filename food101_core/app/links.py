"""Links to any view: the view's state lives in the page's URL as readable query parameters, kept up to date as the
user clicks (`history.replaceState`, no reload), and a page opened from such a URL is restored to that view.

    ?tab=mistakes&model=stage1&true=Apple+Pie&pred=Baklava&conf=50&photo=apple_pie/1234567

A tab builder links a component with `link(ctx, key, component, parse, default)`: its changes write `key` (the
default removes it, so a plain view keeps a plain URL), and on load `parse` turns the URL's text back into the
component's value or refuses it. A view restored in more than one step (a confusion pair and its followers, an
opened photo) adds a `restorer`, run once the linked values are set. The tab itself is restored in the browser, by a
click on its button, so that the tab's own "opened" events run as they do for a person. Values this run does not
know (a dish of another bundle, a stale photo id) are ignored with a short notice, never an error page. URLs are
relative to the page's own address, so a Space's links work too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ..bundle import Bundle
from .context import ALL, AppContext
from .tabs import TABS


@dataclass
class Link:
    key: str
    component: Any
    parse: Callable[[str], Any]  # the URL's text -> the component's value; ValueError when this run has no such value
    default: Any


@dataclass
class Restorer:
    """A step after the linked values are set: `fn(*inputs) -> {output: value}` (or gr.skip())."""

    fn: Callable
    inputs: list
    outputs: list


SCRIPT = """<script>
window.food101Link = (() => {
  const TABS = TAB_IDS;
  const url = () => new URL(window.location.href);
  const write = (u) => window.history.replaceState(window.history.state, '', u.pathname + u.search + u.hash);
  const set = (key, value, dflt) => {
    const u = url(), v = value === null || value === undefined ? '' : String(value);
    if (v === '' || v === String(dflt)) u.searchParams.delete(key); else u.searchParams.set(key, v);
    write(u);
  };
  const tabOf = (button) => TABS[(button.innerText || '').trim()];
  document.addEventListener('click', (e) => {  // a tab opened by a person: the URL says which, its photo goes
    const b = e.target.closest && e.target.closest('.tab-container button');
    if (!b || !tabOf(b)) return;
    const u = url();
    if (u.searchParams.get('tab') !== tabOf(b)) u.searchParams.delete('photo');
    if (tabOf(b) === 'predict') u.searchParams.delete('tab'); else u.searchParams.set('tab', tabOf(b));
    write(u);
  }, true);
  const openTab = async () => {  // the link's tab, once its button exists
    const want = url().searchParams.get('tab');
    if (!want) return;
    for (let i = 0; i < 100; i++) {
      const b = Array.from(document.querySelectorAll('.tab-container button')).find((x) => tabOf(x) === want);
      if (b) { if (!b.classList.contains('selected')) b.click(); return; }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const copy = async (button) => {
    const link = window.location.href;
    try { await navigator.clipboard.writeText(link); } catch (e) { window.prompt('Copy this link:', link); return; }
    const was = button.innerText;
    button.innerText = 'Link copied';
    setTimeout(() => { button.innerText = was; }, 2000);
  };
  const drop = (keys) => {  // what the link held that this run does not have leaves the URL
    const u = url();
    for (const k of JSON.parse(keys || '[]')) u.searchParams.delete(k);
    write(u);
  };
  return {set, openTab, copy, drop};
})();
</script>""".replace("TAB_IDS", json.dumps({t.title: t.id for t in TABS}))
COPY_JS = "() => window.food101Link.copy(document.querySelector('#copy-link'))"


def link(ctx: AppContext, key: str, component, parse: Callable[[str], Any], default: Any) -> None:
    """Keep `component`'s value in the URL under `key`, and restore it from there on load."""
    ctx.links.append(Link(key, component, parse, default))
    js = f"(v) => {{ window.food101Link.set({json.dumps(key)}, v, {json.dumps(default)}); }}"
    component.change(None, component, None, js=js, api_name=False, queue=False)


def restorer(ctx: AppContext, fn: Callable, inputs: list, outputs: list) -> None:
    ctx.restorers.append(Restorer(fn, inputs, outputs))


def derive(ctx: AppContext, component, fn: Callable[[dict], Any]) -> None:
    """A value that follows linked ones (the analysis tabs' view follows Model and Photos), set in the same step as
    they are, so that a restorer reads the restored view and not the one before it."""
    ctx.derived.append((component, fn))


def unchanged(outputs: list) -> dict:
    """A restorer's answer when the link holds nothing for it."""
    return {o: gr.skip() for o in outputs}


def one_of(choices) -> Callable[[str], str]:
    """A parser that accepts one of `choices` (exactly, else ignoring case)."""
    choices = list(choices)
    folded = {str(c).casefold(): c for c in choices}

    def parse(text: str) -> str:
        if text in choices:
            return text
        if text.casefold() in folded:
            return folded[text.casefold()]
        raise ValueError(text)

    return parse


def dish(b: Bundle) -> Callable[[str], str]:
    """A dish by display name or id, any case ("Apple Pie", "apple_pie"), or "All"."""
    names = {n.casefold(): n for n in b.class_names} | {i.casefold(): b.name_of[i] for i in b.class_ids}
    names[ALL.casefold()] = ALL

    def parse(text: str) -> str:
        key = text.strip().casefold()
        if key not in names:
            raise ValueError(text)
        return names[key]

    return parse


def number(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not lo <= value <= hi:
            raise ValueError(text)
        return value

    return parse


def bind(ctx: AppContext, page: gr.Blocks) -> None:
    """On load: the linked values from the URL, then each restorer, then the link's tab opened; a notice names what
    the link holds that this run does not know."""
    known = {"tab": {t.id for t in TABS}} | {l.key: None for l in ctx.links}  # noqa: E741

    dropped = gr.Textbox(visible=False)  # the URL keys the link held that this run does not have (JSON)

    def restore(request: gr.Request) -> dict:
        params = dict(request.query_params) if request else {}
        out, ignored = {dropped: "[]"}, {}
        for l in ctx.links:  # noqa: E741
            if l.key in params:
                try:
                    out[l.component] = l.parse(params[l.key])
                except (ValueError, TypeError):
                    ignored[l.key] = params[l.key]
        tab = params.get("tab")
        if tab is not None and tab not in known["tab"]:
            ignored["tab"] = tab
        ignored |= {k: v for k, v in params.items() if k not in known and not k.startswith("__")}
        for component, fn in ctx.derived:
            out[component] = fn(out)
        if ignored:
            words = ", ".join(f"{k}={v}" for k, v in ignored.items())
            gr.Info(f"This link holds what this run does not have, so it was left out: {words}.", duration=8)
            out[dropped] = json.dumps(list(ignored))
        return out

    outputs = [dropped, *[l.component for l in ctx.links], *[c for c, _ in ctx.derived]]  # noqa: E741
    step = page.load(restore, None, outputs, api_name=False)
    for r in ctx.restorers:
        step = step.then(r.fn, r.inputs, r.outputs, api_name=False)
    step.then(None, dropped, None, js="(keys) => { window.food101Link.drop(keys); window.food101Link.openTab(); }")
