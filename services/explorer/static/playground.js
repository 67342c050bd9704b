// spd explorer: the prompt playground's script (the project's own; no third-party code). The
// page is rendered on the server from its URL; this only keeps the URL in step with the ticked
// components (?c=MODULE:I,J, without a reload, so a copied URL reopens the same selection),
// carries the selection into the token and preset links, writes the selection into the
// `spd export` command, copies that command, and starts a new prompt at its last token.
"use strict";

// The ticked components as MODULE:I,J values, in the decomposition's module order.
function selectedValues(form) {
  const byModule = new Map();
  const boxes = Array.from(form.querySelectorAll("input[type=checkbox][name=c]:checked"));
  boxes.sort((a, b) => Number(a.dataset.rank) - Number(b.dataset.rank)
    || Number(a.dataset.index) - Number(b.dataset.index));
  boxes.forEach((box) => {
    const module = box.dataset.module;
    if (!byModule.has(module)) byModule.set(module, []);
    const indices = byModule.get(module);
    if (!indices.includes(box.dataset.index)) indices.push(box.dataset.index);
  });
  return Array.from(byModule, ([module, indices]) => module + ":" + indices.join(","));
}

// A word as a POSIX shell reads it back (as Python's shlex.quote writes it).
function shellQuote(word) {
  if (word !== "" && !/[^\w@%+=:,./-]/.test(word)) return word;
  return "'" + word.replace(/'/g, "'\"'\"'") + "'";
}

function withSelection(href, values) {
  const url = new URL(href, window.location.href);
  url.searchParams.delete("c");
  values.forEach((value) => url.searchParams.append("c", value));
  return url;
}

function showSelection(form) {
  const values = selectedValues(form);
  window.history.replaceState(null, "", withSelection(window.location.href, values));
  document.querySelectorAll("a.keeps-selection").forEach((link) => {
    link.href = withSelection(link.href, values).toString();
  });
  const command = document.getElementById("export-command");
  if (command) {
    const ablate = values.map((value) => " --ablate " + shellQuote(value)).join("");
    command.textContent = form.dataset.exportPrefix + ablate + " " + form.dataset.exportSuffix;
    document.getElementById("export-empty").hidden = values.length > 0;
  }
}

async function copyExport() {
  const command = document.getElementById("export-command");
  const status = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(command.textContent);
    status.textContent = "copied";
  } catch (err) {
    window.getSelection().selectAllChildren(command);
    status.textContent = "selected: copy it with Ctrl+C";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("playground-form");
  if (!form) return;
  form.addEventListener("change", (event) => {
    if (event.target.name === "c") showSelection(form);
  });
  const pos = document.getElementById("pos-input");
  form.querySelectorAll("#prompt-text, #prompt-ids, #prompt-x").forEach((field) => {
    field.addEventListener("input", () => {
      if (pos) pos.disabled = true;  // a new input starts at its last position
    });
  });
  form.addEventListener("submit", () => {
    const answer = document.getElementById("answer");
    if (answer) answer.classList.add("busy");
  });
  const copy = document.getElementById("copy-export");
  if (copy) copy.addEventListener("click", copyExport);
});
