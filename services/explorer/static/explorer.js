// spd explorer: the project's own script (no third-party code). The probe box of a component
// page: the component's CI on each token of a typed text, through the JSON API; the text goes
// into the URL (?probe=) so that a copied URL reopens the same probe.
"use strict";

function shadeClass(ci) {
  return "ci-" + Math.round(Math.min(Math.max(ci, 0), 1) * 10);
}

function decodeFloat32(tensor) {
  const bytes = Uint8Array.from(atob(tensor.data), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

async function runProbe(form) {
  const text = form.querySelector("#probe-text").value;
  const result = document.getElementById("probe-result");
  const error = document.getElementById("probe-error");
  result.replaceChildren();
  error.hidden = true;
  const url = new URL(window.location.href);
  if (text) url.searchParams.set("probe", text); else url.searchParams.delete("probe");
  window.history.replaceState(null, "", url);
  if (!text) return;
  const component = Number(form.dataset.component);
  const response = await fetch(form.dataset.root + "/api/v1/ComputeImportances", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({
      decomposition: form.dataset.decomposition,
      text: text,
      modules: [form.dataset.module],
      selection: { dense: {} },
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    error.textContent = body.code + ": " + body.message;
    error.hidden = false;
    return;
  }
  const values = decodeFloat32(body.importances[0].values);
  const c = Number(body.importances[0].values.shape[1]);
  body.tokens.strings.forEach((token, i) => {
    const ci = values[i * c + component];
    const span = document.createElement("span");
    span.className = "tok " + shadeClass(ci);
    span.title = "CI " + ci.toFixed(4);
    span.dataset.ci = String(ci);
    span.textContent = token;
    result.appendChild(span);
  });
  result.dataset.done = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("probe-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runProbe(form);
  });
  if (form.querySelector("#probe-text").value) runProbe(form);
});
