// The staff ticket page: choosing a canned reply puts its text into the message, to edit
// before sending, and clears the choice (so the server does not add it a second time).
// Without this script the form still works: the server adds the chosen reply's text.
(function () {
  "use strict";
  if (window.__vmcCannedReplies) return; // loaded again by a boosted visit: one listener
  window.__vmcCannedReplies = true;
  document.addEventListener("change", (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.dataset.cannedInto) return;
    const option = select.selectedOptions[0];
    const body = option ? option.dataset.body : "";
    const area = document.getElementById(select.dataset.cannedInto);
    if (!body || !(area instanceof HTMLTextAreaElement)) return;
    const typed = area.value.trim();
    area.value = typed ? typed + "\n\n" + body : body;
    select.value = "";
    area.focus();
  });
})();
