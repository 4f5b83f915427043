// cliq-webhooks dashboard: small enhancements; every page works without them.
"use strict";

// Copy buttons: <button data-copy="ID"> copies the value (or text) of element ID.
function setUpCopyButtons(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const target = document.getElementById(button.dataset.copy);
      const text = target.value !== undefined ? target.value : target.textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_error) {
        target.select && target.select();  // the user copies by hand
        return;
      }
      const label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 2000);
    });
  }
}

// Forms with data-confirm ask before they are sent.
function setUpConfirmations(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

// A replay's progress, polled until nothing is pending.
function followReplay(root) {
  const panel = root.querySelector("[data-progress-url]");
  if (!panel) return;
  const bar = panel.querySelector("progress");
  const poll = async () => {
    let progress;
    try {
      const response = await fetch(panel.dataset.progressUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      progress = await response.json();
    } catch (_error) {
      return;
    }
    bar.max = progress.total;
    bar.value = progress.total - progress.pending;
    for (const name of ["delivered", "dead", "pending"]) {
      panel.querySelector(`[data-field="${name}"]`).textContent = String(progress[name]);
    }
    if (progress.done) panel.classList.add("done");
    else setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons(document);
  setUpConfirmations(document);
  followReplay(document);
});
