// The Monitoring page's silences: "Silence" (a dialog prefilled from the alert's row) and "Snooze"
// on each alert row, the silenced filter of the alerts table, and the Silences and Maintenance
// windows sections (server fragments, refreshed after each change and on system_alert). Writes go
// through the API: /api/silences/, /api/alerts/<id>/snooze/, /api/maintenance-windows/.

import { realtime } from "../realtime.js";
import { liveElement, postJSON, toast } from "../ui.js";

const $ = (id) => document.getElementById(id);
const withId = (template, id) => template.replace(/\/0\/(\w+\/)?$/, (_, rest) => `/${id}/${rest || ""}`);

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A datetime-local value (the browser's local time) for a Date. */
function localInput(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function matchersOf(form) {
  const matchers = {};
  for (const key of ["rule", "subject", "priority"]) {
    const value = form.elements[key]?.value.trim();
    if (value) matchers[key] = value;
  }
  const project = form.elements.project?.value.trim();
  if (project) matchers.project = Number(project);
  return matchers;
}

function clearErrors(form) {
  for (const el of form.querySelectorAll("[data-error-for]")) {
    el.hidden = true;
    el.textContent = "";
  }
}

/** Show a 400's errors next to their fields (the rest, and other statuses, at the form's top). */
function showErrors(form, status, body) {
  const errors = (body && body.errors) || {};
  let shown = false;
  for (const [field, messages] of Object.entries(errors)) {
    const el = form.querySelector(`[data-error-for="${field}"]`);
    if (!el) continue;
    el.textContent = [].concat(messages).join(" ");
    el.hidden = false;
    shown = true;
  }
  if (!shown) {
    const el = form.querySelector('[data-error-for="form"]');
    el.textContent = body?.detail || `HTTP ${status}`;
    el.hidden = false;
  }
}

export function initSilences({ data, alertRows }) {
  const dialog = $("silence-dialog");
  const form = $("silence-form");
  const refreshSilences = liveElement(data.silencesSectionUrl, "silences-card");
  const refreshWindows = liveElement(data.windowsSectionUrl, "windows-card");
  let alertId = null;
  let timer = null;

  // Others' silences mark alerts too: refresh the sections (at most once a second) when alerts change.
  realtime.on("system_alert", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      refreshSilences();
      refreshWindows();
    }, 1000);
  });

  function openDialog({ rule = "", subject = "", project = "", id = null } = {}) {
    if (!dialog || !form) return;
    alertId = id;
    clearErrors(form);
    form.elements.rule.value = rule;
    form.elements.subject.value = subject;
    form.elements.priority.value = "";
    form.elements.project.value = project || form.elements.project.dataset.default || "";
    form.elements.ends_at.value = localInput(new Date(Date.now() + 2 * 3600 * 1000));
    form.elements.comment.value = "";
    dialog.showModal();
    form.elements.ends_at.focus();
  }

  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const ends = form.elements.ends_at.value;
    const body = {
      matchers: matchersOf(form),
      ends_at: ends ? new Date(ends).toISOString() : null,
      comment: form.elements.comment.value.trim(),
    };
    const submit = $("silence-submit");
    submit.disabled = true;
    try {
      const { ok, status, body: answer } = await postJSON(data.silencesUrl, body);
      if (!ok) return showErrors(form, status, answer);
      dialog.close();
      toast({ kind: "success", title: "Silenced", message: `Until ${new Date(answer.ends_at).toLocaleString()}` });
      if (alertId != null) alertRows.refresh(alertId);
      refreshSilences();
    } finally {
      submit.disabled = false;
    }
  });
  dialog?.addEventListener("click", (event) => {
    if (event.target.closest('[data-action="close-dialog"]')) dialog.close();
  });

  $("alert-rows")?.addEventListener("click", async (event) => {
    const button = event.target.closest('button[data-action="silence"], button[data-action="snooze"]');
    if (!button) return;
    const row = button.closest("tr");
    const id = row.dataset.alertId;
    if (button.dataset.action === "silence") {
      openDialog({ rule: button.dataset.rule, subject: button.dataset.subject, project: button.dataset.project, id });
      return;
    }
    button.disabled = true;
    try {
      const minutes = Number(button.dataset.minutes);
      const { ok, status, body } = await postJSON(withId(data.snoozeUrl, id), { minutes });
      if (ok) {
        button.closest("details")?.removeAttribute("open");
        alertRows.refresh(id);
        refreshSilences();
      } else {
        toast({ kind: status === 409 ? "warning" : "error", title: "Could not snooze", message: body?.detail || `HTTP ${status}` });
      }
    } finally {
      button.disabled = false;
    }
  });

  // The silenced filter: a silenced row shows its "Silenced until" badge (kept by each live refresh).
  const filter = $("alerts-silenced-filter");
  function applyFilter() {
    const want = filter?.value || "";
    for (const row of document.querySelectorAll("#alert-rows tr")) {
      const silenced = row.querySelector('[data-field="silenced"]') ? "true" : "false";
      row.hidden = want !== "" && silenced !== want;
    }
  }
  filter?.addEventListener("change", applyFilter);
  if ($("alert-rows")) new MutationObserver(applyFilter).observe($("alert-rows"), { childList: true, subtree: true });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest('button[data-action="new-silence"], button[data-action="expire-silence"], button[data-action="delete-window"]');
    if (!button) return;
    const action = button.dataset.action;
    if (action === "new-silence") return openDialog();
    button.disabled = true;
    try {
      const url = action === "expire-silence"
        ? withId(data.silenceUrl, button.closest("tr").dataset.silenceId)
        : withId(data.windowUrl, button.closest("tr").dataset.windowId);
      const { ok, status, body } = await postJSON(url, undefined, { method: "DELETE" });
      if (!ok && status !== 409) toast({ kind: "error", title: "Could not change it", message: body?.detail || `HTTP ${status}` });
      if (action === "expire-silence") refreshSilences();
      else refreshWindows();
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async (event) => {
    const windowForm = event.target.closest("#window-form");
    if (!windowForm) return;
    event.preventDefault();
    clearErrors(windowForm);
    const body = {
      matchers: matchersOf(windowForm),
      cron: windowForm.elements.cron.value.trim(),
      duration_minutes: Number(windowForm.elements.duration_minutes.value),
      comment: windowForm.elements.comment.value.trim(),
    };
    const { ok, status, body: answer } = await postJSON(data.windowsUrl, body);
    if (!ok) return showErrors(windowForm, status, answer);
    windowForm.reset();
    refreshWindows();
  });
}
