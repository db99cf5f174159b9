"""The two pages account emails link to. Opening a link changes nothing (mail scanners open
links too); the page asks the user to confirm, then calls the API."""

from __future__ import annotations

import json
from html import escape

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · VMCloud</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem;
        color: #1f2933; }}
 h1 {{ font-size: 1.4rem; }} input, button {{ font: inherit; padding: .55rem .7rem; width: 100%;
        box-sizing: border-box; margin: .3rem 0; }}
 button {{ background: #0b69ff; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }}
 #result {{ margin-top: 1rem; }} .error {{ color: #b42318; }} .ok {{ color: #067647; }}
</style></head>
<body><main><h1>{title}</h1>{body}<p id="result" role="status"></p></main>
<script>
const token = {token_json};
async function send(path, payload) {{
  const out = document.getElementById("result");
  const response = await fetch(path, {{method: "POST",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify(payload)}});
  if (response.ok) {{ out.className = "ok"; out.textContent = {done_json}; return; }}
  const problem = await response.json().catch(() => ({{}}));
  out.className = "error";
  out.textContent = problem.detail || "Something went wrong.";
}}
{script}
</script></body></html>"""


def _js_string(value: str) -> str:
    """A JavaScript string literal that is also safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(*, title: str, body: str, token: str, done: str, script: str) -> HTMLResponse:
    html = _PAGE.format(
        title=escape(title),
        body=body,
        token_json=_js_string(token),
        done_json=_js_string(done),
        script=script,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/verify-email", response_class=HTMLResponse)
def verify_email_page(token: str = Query("", max_length=200)) -> HTMLResponse:
    return _page(
        title="Confirm your email address",
        body='<button id="go">Confirm my email address</button>',
        token=token,
        done="Your email address is confirmed. You can close this page.",
        script=(
            'document.getElementById("go").onclick = () => '
            'send("/api/v1/auth/verify-email", {token});'
        ),
    )


@router.get("/reset-password", response_class=HTMLResponse)
def reset_password_page(token: str = Query("", max_length=200)) -> HTMLResponse:
    return _page(
        title="Choose a new password",
        body=(
            '<form id="f"><label for="pw">New password (at least 10 characters)</label>'
            '<input id="pw" type="password" minlength="10" maxlength="1024" required '
            'autocomplete="new-password"><button>Set password</button></form>'
        ),
        token=token,
        done="Your password is changed. Log in with it now.",
        script=(
            'document.getElementById("f").onsubmit = (e) => { e.preventDefault(); '
            'send("/api/v1/auth/password-reset/confirm", '
            '{token, new_password: document.getElementById("pw").value}); };'
        ),
    )
