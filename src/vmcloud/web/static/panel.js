// The panel's own behaviour: keyboard shortcuts, copy buttons, dialogs and
// type-the-name confirmations. Everything here is an enhancement; forms work without it.
(function () {
  "use strict";
  let pendingG = false;
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    if (pendingG) {
      pendingG = false;
      const target = { i: "/instances", b: "/billing", a: "/account" }[event.key];
      if (target) { window.location.assign(target); event.preventDefault(); }
      return;
    }
    if (event.key === "g") { pendingG = true; setTimeout(() => { pendingG = false; }, 1500); return; }
    if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { search.focus(); event.preventDefault(); }
      return;
    }
    if (event.key === "?") {
      const help = document.getElementById("help");
      if (help && !help.open) { help.showModal(); event.preventDefault(); }
    }
  });
  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const helpLink = target.closest("[data-help]");
    if (helpLink) {
      const help = document.getElementById("help");
      if (help) { help.showModal(); event.preventDefault(); }
      return;
    }
    const close = target.closest("[data-close-dialog]");
    if (close) { const dialog = close.closest("dialog"); if (dialog) dialog.close(); return; }
    const copy = target.closest("[data-copy]");
    if (copy) {
      const text = copy.getAttribute("data-copy") || "";
      navigator.clipboard.writeText(text).then(() => {
        const label = copy.textContent;
        copy.textContent = "Copied";
        setTimeout(() => { copy.textContent = label; }, 1500);
      }).catch(() => {});
    }
  });
  // A destructive button stays disabled until the resource's name is typed (the server
  // checks the name too).
  document.addEventListener("input", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.dataset.confirmName) return;
    const form = input.form;
    const button = form && form.querySelector("button[type=submit]");
    if (button) button.disabled = input.value !== input.dataset.confirmName;
  });
})();
