// The serial console page: xterm.js over the page's same-origin WebSocket. Frames are binary
// both ways (what the guest wrote; keystrokes as UTF-8). One tab at a time holds a console.
(function () {
  "use strict";
  const box = document.getElementById("terminal");
  if (!box || !window.Terminal || !window.FitAddon) return;
  const state = document.getElementById("console-state");
  const note = document.getElementById("console-note");
  const reconnect = document.getElementById("console-reconnect");
  const cad = document.getElementById("console-cad");
  const CHUNK = 4096; // the server takes frames of up to 16 KiB
  const REASONS = {
    1000: "The console ended (the VM stopped).",
    1009: "Too much input at once.",
    4401: "Your session has ended. Log in again.",
    4409: "The console is open in another tab or window. Close it there, then reconnect.",
    4410: "The VM is not running.",
  };
  const term = new window.Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14 });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const encoder = new TextEncoder();
  let socket = null;
  let retried = false;

  function show(text, kind) {
    state.textContent = text;
    state.dataset.state = kind;
    reconnect.hidden = kind !== "closed";
  }

  function connect() {
    if (socket) return;
    show("Connecting…", "connecting");
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + window.location.host + box.dataset.socket);
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.addEventListener("open", () => { show("Connected", "open"); term.focus(); });
    ws.addEventListener("message", (event) => {
      term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    });
    ws.addEventListener("close", (event) => {
      if (socket === ws) socket = null;
      // A reload can arrive before the server has let go of the last page's console.
      if (event.code === 4409 && !retried) { retried = true; setTimeout(connect, 1000); return; }
      show(event.reason || REASONS[event.code] || "Disconnected.", "closed");
    });
  }

  function send(text) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const bytes = encoder.encode(text);
    for (let at = 0; at < bytes.length; at += CHUNK) socket.send(bytes.subarray(at, at + CHUNK));
  }

  term.onData(send);
  term.onBinary((data) => {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(Uint8Array.from(data, (ch) => ch.charCodeAt(0) & 255));
    }
  });
  reconnect.addEventListener("click", () => { retried = true; connect(); });
  window.addEventListener("resize", () => fit.fit());
  window.addEventListener("pagehide", () => { if (socket) socket.close(); });
  // Leaving by a boosted link swaps the body: let go of the console then too.
  new MutationObserver(() => {
    if (!box.isConnected && socket) { const ws = socket; socket = null; ws.close(); }
  }).observe(document.body, { childList: true, subtree: true });
  if (cad) {
    cad.addEventListener("submit", (event) => {
      event.preventDefault();
      note.textContent = "Sending Ctrl-Alt-Del…";
      fetch(cad.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(cad)),
        credentials: "same-origin",
        redirect: "manual",
      }).then((answer) => {
        const sent = answer.type === "opaqueredirect" || answer.ok;
        note.textContent = sent ? "Ctrl-Alt-Del sent." : "The VM did not take the keys.";
      }).catch(() => { note.textContent = "Ctrl-Alt-Del could not be sent."; });
      term.focus();
    });
  }
  connect();
})();
