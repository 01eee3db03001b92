"""Small HTML building blocks for the explorer: every value is escaped unless it is already `Html`.

Chain-derived text (memos, model names, proposal titles) is attacker-controlled, so nothing reaches a page
without `esc`; the layout's script reads the live endpoint and writes with `textContent` only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from racenet.chain.modules.bank.denom import format_amount
from racenet.crypto.address import encode_address

PREFIX = "/explorer"
LIVE_POLL_MS = 2000
NAV = (
    ("", "overview"),
    ("/blocks", "blocks"),
    ("/race", "race"),
    ("/beacon", "beacon"),
    ("/requests", "requests"),
    ("/rewards", "rewards"),
    ("/tokenomics", "tokenomics"),
    ("/pricing", "pricing"),
    ("/gov", "governance"),
    ("/training", "training"),
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#cfe0ff;text-decoration:none}header strong{font-size:1.15em}
main{padding:1em 1.5em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.2em;background:#fff;font-size:.9em}
th,td{border:1px solid #d5d9e0;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#e9edf3}code,pre{font-size:.85em}pre{background:#fff;border:1px solid #d5d9e0;padding:.5em;overflow:auto}
.error{background:#fde8e8;border:1px solid #d33;padding:.8em;margin:1em 0}
.muted{color:#667}.live{font-variant-numeric:tabular-nums}svg{max-width:100%;height:auto;background:#fff}
"""
SCRIPT = """
async function racenetLive(){
  try{
    const r=await fetch('PREFIX/api/live');if(!r.ok)return;const d=await r.json();
    document.getElementById('height').textContent=d.height;
    const body=document.querySelector('#latest-blocks tbody');
    if(body){
      body.replaceChildren(...d.blocks.map(b=>{
        const tr=document.createElement('tr');const a=document.createElement('a');
        a.href='PREFIX/blocks/'+b.height;a.textContent=b.height;
        const cells=[a,b.time,String(b.txs)];
        for(const c of cells){const td=document.createElement('td');
          if(typeof c==='string')td.textContent=c;else td.appendChild(c);tr.appendChild(td);}
        return tr;}));
    }
  }catch(e){}
}
setInterval(racenetLive,POLL_MS);
""".replace("PREFIX", PREFIX).replace("POLL_MS", str(LIVE_POLL_MS))


class Html(str):
    """Text that is already HTML (built by these helpers): `esc` passes it through."""


def esc(value: object) -> Html:
    """`value` as HTML: escaped text unless it is `Html` already."""
    return value if isinstance(value, Html) else Html(html.escape(str(value)))


def join(parts: Iterable[object]) -> Html:
    """Several values (escaped) one after the other."""
    return Html("".join(esc(p) for p in parts))


def tag(name: str, *children: object, **attrs: str) -> Html:
    """An element with escaped attributes (`class_` for `class`) and children."""
    text = "".join(f' {k.rstrip("_")}="{html.escape(v)}"' for k, v in attrs.items())
    return Html(f"<{name}{text}>{join(children)}</{name}>")


def link(path: str, text: object) -> Html:
    """A link to an explorer page (`path` under the explorer's prefix)."""
    return tag("a", text, href=PREFIX + path)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], id_: str = "") -> Html:
    """A table; an empty one says so."""
    body = [tag("tr", *(tag("td", c) for c in row)) for row in rows]
    if not body:
        body = [tag("tr", tag("td", "none", colspan=str(len(headers)), class_="muted"))]
    attrs = {"id": id_} if id_ else {}
    return tag("table", tag("thead", tag("tr", *(tag("th", h) for h in headers))), tag("tbody", *body), **attrs)


def fields(pairs: Iterable[tuple[str, object]]) -> Html:
    """A two-column table of named values."""
    return tag("table", *(tag("tr", tag("th", k), tag("td", v)) for k, v in pairs))


def error_box(message: str) -> Html:
    """A visible error in place of a page's content."""
    return tag("div", tag("strong", "Cannot show this page: "), message, class_="error", role="alert")


def address(raw: bytes) -> Html:
    """An account address linked to its rewards page."""
    text = encode_address(raw)
    return link(f"/rewards/{text}", text)


def amount(nicoin: int) -> str:
    """An amount in icon, exact to the nicoin."""
    return format_amount(nicoin)


def page(title: str, height: object, *content: object) -> str:
    """A whole page: the navigation (with the live height) around `content`."""
    nav = [link(path, name) for path, name in NAV]
    header = tag(
        "header",
        tag("strong", "racenet explorer"),
        *nav,
        tag("span", "height ", tag("span", height, id="height", class_="live")),
    )
    head = tag(
        "head", Html('<meta charset="utf-8">'), tag("title", f"{title} · racenet explorer"), tag("style", Html(STYLE))
    )
    body = tag("body", header, tag("main", tag("h1", title), *content), tag("script", Html(SCRIPT)))
    return "<!doctype html>" + tag("html", head, body, lang="en")
