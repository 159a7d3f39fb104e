// Review queue keyboard: j / k move between items; y, n, u, t press the item's marked buttons
// (this is the nearest person, not them, unknown, add as template). Typing in a field is left alone.
"use strict";

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select")) return;
  const items = Array.from(document.querySelectorAll("article.review"));
  if (!items.length) return;
  const current = event.target.closest("article.review");
  const index = current ? items.indexOf(current) : -1;
  if (event.key === "j" || event.key === "k") {
    const next = event.key === "j" ? Math.min(index + 1, items.length - 1) : Math.max(index - 1, 0);
    items[next].focus();
    items[next].scrollIntoView({block: "nearest"});
    event.preventDefault();
    return;
  }
  if (!current) return;
  const button = current.querySelector(`button[data-key="${event.key}"]`);
  if (button) {
    button.click();
    event.preventDefault();
  }
});

// After htmx replaces an answered item, keep the keyboard where it was.
document.addEventListener("htmx:afterSwap", (event) => {
  const item = event.detail.target && document.getElementById(event.detail.target.id);
  if (item && item.matches("article.review")) item.focus();
});
