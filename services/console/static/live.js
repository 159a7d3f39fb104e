// Live doors page: a decision already on the page is not added again (a reconnecting stream
// re-sends a few seconds of decisions, since they are published slightly out of order), and
// the table keeps the newest rows only.
"use strict";

const MAX_ROWS = 200;

document.addEventListener("htmx:sseBeforeMessage", (event) => {
  const id = event.detail && event.detail.type === "decision" && event.detail.lastEventId;
  if (id && document.querySelector(`#live-decisions tr[data-event-id="${CSS.escape(id)}"]`)) {
    event.preventDefault();
  }
});

document.addEventListener("htmx:sseMessage", () => {
  const rows = document.querySelectorAll("#live-decisions tr");
  for (let i = MAX_ROWS; i < rows.length; i++) rows[i].remove();
});
