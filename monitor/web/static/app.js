// newsmon workspace: progressive enhancement only; every page works without it.
"use strict";
document.addEventListener("keydown", (event) => {
  // "/" jumps to the search box, as in most readers.
  const target = event.target;
  if (event.key !== "/" || (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  const box = document.getElementById("q") || document.getElementById("quick-search");
  if (box) { event.preventDefault(); box.focus(); }
});
document.addEventListener("submit", (event) => {
  // A feedback click is sent once: its buttons wait for the page that answers.
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.classList.contains("feedback")) return;
  window.setTimeout(() => form.querySelectorAll("button").forEach((b) => { b.disabled = true; }), 0);
});
