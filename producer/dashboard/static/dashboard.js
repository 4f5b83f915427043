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

// Token names: the rename form shows when the name is clicked.
function setUpRenames(root) {
  for (const toggle of root.querySelectorAll(".rename-toggle")) {
    const form = document.getElementById(toggle.getAttribute("aria-controls"));
    form.hidden = true;
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) form.querySelector("input[name=name]").focus();
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { form.hidden = true; toggle.setAttribute("aria-expanded", "false"); toggle.focus(); }
    });
  }
}

// "Get Webhook URL": a modal dialog whose options follow the chosen module.
function setUpWebhookUrlDialog(root) {
  const dialog = root.getElementById("webhook-url");
  if (!dialog) return;
  const form = dialog.querySelector("form");
  const moduleSelect = form.querySelector("select[name=module]");
  const names = form.querySelector("select[name=name]");
  const nameLabel = form.querySelector("label[for=resource-name]");
  const appkeyField = form.querySelector(".appkey-field");
  const noneOwned = form.querySelector(".none-owned");
  const result = dialog.querySelector(".url-result");
  const output = result.querySelector("input");

  const showOptions = () => {
    const kind = moduleSelect.selectedOptions[0].dataset.kind;
    nameLabel.textContent = nameLabel.dataset["label" + kind[0].toUpperCase() + kind.slice(1)];
    let first = null;
    for (const group of names.querySelectorAll("optgroup")) {
      const wanted = group.dataset.kind === kind;
      group.hidden = !wanted;
      group.disabled = !wanted;
      if (wanted && !first) first = group.querySelector("option");
    }
    if (names.selectedOptions.length === 0 || names.selectedOptions[0].dataset.kind !== kind) {
      names.value = first ? first.value : "";
    }
    noneOwned.hidden = first !== null;
    appkeyField.hidden = kind !== "app";
    appkeyField.querySelector("input").disabled = kind !== "app";
    result.hidden = true;
  };
  moduleSelect.addEventListener("change", showOptions);
  showOptions();

  const showErrors = (errors) => {
    for (const old of form.querySelectorAll(".field-error.live")) old.remove();
    for (const [field, message] of Object.entries(errors)) {
      const input = form.querySelector(`[name="${field}"]`) || moduleSelect;
      const note = document.createElement("p");
      note.className = "field-error live";
      note.textContent = message;
      input.closest(".field").append(note);
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new URLSearchParams(new FormData(form));
    const response = await fetch(form.action, {
      method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    const answer = await response.json();
    showErrors(answer.errors || {});
    if (!response.ok) { result.hidden = true; return; }
    output.value = answer.url;
    result.querySelector(".url-incomplete").hidden = answer.complete;
    result.hidden = false;
  });

  for (const opener of root.querySelectorAll(`[data-dialog="webhook-url"]`)) {
    opener.addEventListener("click", (event) => { event.preventDefault(); dialog.showModal(); });
  }
  dialog.querySelector(".close-dialog").addEventListener("click", () => dialog.close());
  if (dialog.open) { dialog.close(); dialog.showModal(); }  // opened by the server (no script before)
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons(document);
  setUpConfirmations(document);
  followReplay(document);
  setUpRenames(document);
  setUpWebhookUrlDialog(document);
});
