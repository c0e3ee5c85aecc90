// The step editor (templates/pipelines/_editor.html): one card per step with the fields of its
// kind; steps are added, removed and reordered here, and the form sends the JSON it shows to the
// API (POST to create, PUT to edit). Errors come back naming the step ("steps[2] (train_model): ...")
// and are shown on that step's card.

import { postJSON } from "../ui.js";

const OPTIONAL = true;

// Field specs per step kind. `inner` fields of process_dataset go into options.options; `when`
// shows a field only for some operations.
function fieldSpecs(config) {
  const choices = (values) => values.map((v) => ({ value: v, label: v }));
  return {
    validate_dataset: [
      { name: "min_quality_score", label: "Minimum quality score (0-100)", type: "number", min: 0, max: 100, step: "any", optional: OPTIONAL },
      { name: "required_columns", label: "Required columns", type: "columns", optional: OPTIONAL },
    ],
    process_dataset: [
      { name: "operation", label: "Operation", type: "select", choices: choices(config.operations) },
      { name: "drop_duplicates", label: "Drop duplicate rows", type: "checkbox", inner: true, when: ["clean"], initial: true },
      { name: "missing", label: "Missing values", type: "select", inner: true, when: ["clean"], choices: choices(config.missing_strategies) },
      { name: "fill_value", label: "Fill value", type: "text", inner: true, when: ["clean"], optional: OPTIONAL },
      { name: "test_ratio", label: "Test ratio", type: "number", inner: true, when: ["split"], min: 0.01, max: 0.99, step: "any", initial: 0.2 },
      { name: "stratify", label: "Stratify by the target", type: "checkbox", inner: true, when: ["split"] },
      { name: "random_state", label: "Random seed", type: "number", inner: true, when: ["split"], min: 0, step: 1, initial: 42, integer: true },
      { name: "method", label: "Method", type: "select", inner: true, when: ["scale"], choices: choices(config.scale_methods) },
      { name: "columns", label: "Columns (all when empty)", type: "columns", inner: true, when: ["clean", "scale"], optional: OPTIONAL },
    ],
    train_model: [
      { name: "algorithm", label: "Algorithm", type: "select", choices: choices(config.algorithms) },
      { name: "target_column", label: "Target column", type: "column", optional: OPTIONAL, placeholder: "the dataset's target" },
      { name: "epochs", label: `Epochs (1-${config.max_epochs})`, type: "number", min: 1, max: config.max_epochs, step: 1, initial: 20, integer: true },
      { name: "task", label: "Task", type: "select", optional: OPTIONAL, choices: [{ value: "", label: "Infer from the target" }, ...choices(config.tasks)] },
      { name: "test_size", label: "Test size", type: "number", min: 0.01, max: 0.99, step: "any", optional: OPTIONAL, placeholder: "0.2" },
      { name: "name", label: "Model name", type: "text", optional: OPTIONAL, placeholder: "the pipeline's name" },
    ],
    evaluate: [
      { name: "metric", label: "Metric", type: "select", choices: choices(config.metrics) },
      { name: "threshold", label: "Threshold", type: "number", step: "any", initial: 0.9 },
    ],
    deploy_model: [],
    detect_anomalies: [
      { name: "contamination", label: "Contamination (share of anomalous rows)", type: "number", min: 0.001, max: 0.5, step: "any", initial: 0.05 },
      { name: "columns", label: "Columns (all numeric when empty)", type: "columns", optional: OPTIONAL },
    ],
  };
}

const KIND_HINTS = {
  validate_dataset: "Checks the dataset is ready, has the required columns and a good enough quality score.",
  process_dataset: "Runs a processing job; its output dataset (for a split: the train part) feeds the next step.",
  train_model: "Trains a model version on the current dataset.",
  evaluate: "The quality gate: fails the run when the model's metric misses the threshold (error metrics must be at most it).",
  deploy_model: "Deploys the trained model version (only reached when the gate passed).",
  detect_anomalies: "Scores the current dataset's rows for anomalies (monitoring app).",
};

let uid = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "for") node.setAttribute(key, value === true ? "" : value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const ICONS = {
  up: "M12 19V5M5 12l7-7 7 7",
  down: "M12 5v14M5 12l7 7 7-7",
  remove: "M6 6l12 12M18 6L6 18",
};

function iconButton(label, icon, data) {
  const button = el("button", { type: "button", className: "icon-btn icon-btn--sm", "aria-label": label, title: label, [data]: true });
  button.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true"><path d="${ICONS[icon]}"/></svg>`;
  return button;
}

export function createEditor(form, { config, datasets, pipeline, project = null, onSaved }) {
  const specs = fieldSpecs(config);
  const kinds = config.kinds;
  const list = form.querySelector("[data-step-list]");
  const preview = form.querySelector("[data-json-preview]");
  const datasetSelect = form.elements.dataset;
  const addKind = form.querySelector("[data-add-kind]");
  const columnsList = el("datalist", { id: `pe-columns-${(uid += 1)}` });
  form.append(columnsList);

  // --- the pipeline's own fields --------------------------------------------------------------------

  for (const d of datasets) {
    datasetSelect.append(el("option", { value: String(d.id), text: `${d.name} (#${d.id}${d.status === "ready" ? "" : `, ${d.status}`})` }));
  }
  for (const k of kinds) addKind.append(el("option", { value: k.value, text: k.label }));

  function currentDataset() {
    return datasets.find((d) => String(d.id) === datasetSelect.value) || null;
  }

  function refreshColumns() {
    const dataset = currentDataset();
    columnsList.replaceChildren(...(dataset?.columns || []).map((c) => el("option", { value: c })));
    for (const input of form.querySelectorAll("[data-target-input]")) input.placeholder = dataset?.target ? `${dataset.target} (the dataset's target)` : "column name";
  }

  // --- step cards -----------------------------------------------------------------------------------

  function fieldInput(spec, id) {
    if (spec.type === "select") {
      const select = el("select", { id, className: "input" });
      for (const c of spec.choices) select.append(el("option", { value: c.value, text: c.label }));
      return select;
    }
    if (spec.type === "checkbox") return el("input", { id, type: "checkbox" });
    const input = el("input", { id, className: "input", type: spec.type === "number" ? "number" : "text", autocomplete: "off" });
    if (spec.type === "number") {
      if (spec.min !== undefined) input.min = String(spec.min);
      if (spec.max !== undefined) input.max = String(spec.max);
      input.step = String(spec.step ?? "any");
    }
    if (spec.type === "column") {
      input.setAttribute("list", columnsList.id);
      input.dataset.targetInput = "";
    }
    if (spec.type === "columns") input.placeholder = "comma-separated column names";
    if (spec.placeholder) input.placeholder = spec.placeholder;
    return input;
  }

  function setValue(input, spec, value) {
    if (spec.type === "checkbox") input.checked = value === undefined ? Boolean(spec.initial) : Boolean(value);
    else if (spec.type === "columns") input.value = Array.isArray(value) ? value.join(", ") : "";
    else if (spec.type === "select" && (value === undefined || value === null)) {
      if (spec.initial !== undefined) input.value = String(spec.initial); // else: the first choice
    }
    else if (value === undefined || value === null) input.value = spec.initial !== undefined ? String(spec.initial) : "";
    else input.value = String(value);
  }

  function readValue(input, spec) {
    if (spec.type === "checkbox") return input.checked;
    const raw = input.value.trim();
    if (spec.type === "columns") {
      const cols = raw.split(",").map((c) => c.trim()).filter(Boolean);
      return cols.length ? cols : undefined;
    }
    if (raw === "") return undefined;
    if (spec.type === "number") {
      const n = Number(raw);
      return Number.isNaN(n) ? raw : n;
    }
    return raw;
  }

  function stepCard(step) {
    const kind = step.kind;
    const options = step.options || {};
    const inner = kind === "process_dataset" ? options.options || Object.fromEntries(Object.entries(options).filter(([k]) => k !== "operation")) : {};
    const card = el("li", { className: "step-card", "data-kind": kind });
    const title = el("p", { className: "step-card__title" }, el("span", { className: "step-card__index" }), el("span", { text: kinds.find((k) => k.value === kind)?.label || kind }), el("code", { className: "muted", text: kind }));
    const tools = el("div", { className: "step-card__tools" }, iconButton("Move up", "up", "data-move-up"), iconButton("Move down", "down", "data-move-down"), iconButton("Remove step", "remove", "data-remove"));
    card.append(el("div", { className: "step-card__head" }, title, tools));
    card.append(el("p", { className: "muted step-card__hint", text: KIND_HINTS[kind] || "" }));
    const grid = el("div", { className: "step-card__fields" });
    for (const spec of specs[kind] || []) {
      const id = `pe-f-${(uid += 1)}`;
      const input = fieldInput(spec, id);
      input.dataset.option = spec.name;
      setValue(input, spec, spec.inner ? inner[spec.name] : options[spec.name]);
      const label = el("label", { for: id, text: spec.label });
      const field = el("div", { className: spec.type === "checkbox" ? "field field--check" : "field" });
      if (spec.type === "checkbox") field.append(el("span", { className: "check" }, input, label));
      else field.append(label, input);
      if (spec.when) field.dataset.when = spec.when.join(" ");
      grid.append(field);
      input._spec = spec;
    }
    if (!(specs[kind] || []).length) grid.append(el("p", { className: "muted", text: "No options." }));
    card.append(grid, el("ul", { className: "step-card__errors", "data-step-errors": true, hidden: true }));
    card._kind = kind;
    syncWhen(card);
    return card;
  }

  function syncWhen(card) {
    const operation = card.querySelector('[data-option="operation"]')?.value;
    for (const field of card.querySelectorAll("[data-when]")) field.hidden = !field.dataset.when.split(" ").includes(operation);
  }

  function readStep(card) {
    const kind = card._kind;
    const options = {};
    const inner = {};
    for (const input of card.querySelectorAll("[data-option]")) {
      const spec = input._spec;
      if (input.closest("[data-when]")?.hidden) continue;
      const value = readValue(input, spec);
      if (value === undefined || (spec.optional && value === "")) continue;
      (spec.inner ? inner : options)[spec.name] = value;
    }
    if (kind === "process_dataset") options.options = inner;
    return { kind, options };
  }

  function renumber() {
    const cards = [...list.children];
    cards.forEach((card, i) => {
      card.querySelector(".step-card__index").textContent = String(i + 1);
      card.querySelector("[data-move-up]").disabled = i === 0;
      card.querySelector("[data-move-down]").disabled = i === cards.length - 1;
    });
  }

  function addStep(step) {
    list.append(stepCard(step));
    renumber();
  }

  // --- the JSON -------------------------------------------------------------------------------------

  function payload() {
    const maxRuns = form.elements.max_concurrent_runs.value.trim();
    const data = {
      // A new pipeline goes to the page's current project; an existing one stays in its own.
      ...(!pipeline && project != null ? { project } : {}),
      name: form.elements.name.value.trim(),
      description: form.elements.description.value,
      dataset: datasetSelect.value ? Number(datasetSelect.value) : null,
      schedule: form.elements.schedule.value.trim(),
      steps: [...list.children].map(readStep),
    };
    if (maxRuns) data.max_concurrent_runs = Number(maxRuns);
    return data;
  }

  function updatePreview() {
    preview.textContent = JSON.stringify(payload(), null, 2);
  }

  // --- errors ---------------------------------------------------------------------------------------

  function clearErrors() {
    form.querySelector("[data-editor-error]").hidden = true;
    for (const p of form.querySelectorAll("[data-error-for]")) p.hidden = true;
    for (const ul of form.querySelectorAll("[data-step-errors]")) {
      ul.hidden = true;
      ul.replaceChildren();
    }
    for (const card of list.children) card.classList.remove("has-error");
  }

  function showErrors(body) {
    const errors = body?.errors || {};
    const general = [];
    for (const [field, messages] of Object.entries(errors)) {
      const texts = [].concat(messages).map(String);
      if (field === "steps") {
        const loose = [];
        for (const text of texts) {
          const match = text.match(/^steps\[(\d+)\]/);
          const card = match ? list.children[Number(match[1])] : null;
          if (!card) {
            loose.push(text);
            continue;
          }
          card.classList.add("has-error");
          const ul = card.querySelector("[data-step-errors]");
          ul.append(el("li", { text }));
          ul.hidden = false;
        }
        if (loose.length) showFieldError("steps", loose.join(" "));
        continue;
      }
      if (!showFieldError(field, texts.join(" "))) general.push(`${field}: ${texts.join(" ")}`);
    }
    if (!Object.keys(errors).length) general.push(body?.detail || "The pipeline could not be saved.");
    if (general.length) {
      const alert = form.querySelector("[data-editor-error]");
      alert.textContent = general.join(" ");
      alert.hidden = false;
    }
    form.querySelector(".has-error, [data-error-for]:not([hidden]), [data-editor-error]:not([hidden])")?.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  function showFieldError(field, text) {
    const p = form.querySelector(`[data-error-for="${field}"]`);
    if (!p) return false;
    p.textContent = text;
    p.hidden = false;
    return true;
  }

  // --- wiring ---------------------------------------------------------------------------------------

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const card = button?.closest(".step-card");
    if (!card) return;
    if (button.hasAttribute("data-remove")) card.remove();
    else if (button.hasAttribute("data-move-up") && card.previousElementSibling) card.previousElementSibling.before(card);
    else if (button.hasAttribute("data-move-down") && card.nextElementSibling) card.nextElementSibling.after(card);
    else return;
    renumber();
    updatePreview();
  });
  list.addEventListener("change", (event) => {
    const card = event.target.closest(".step-card");
    if (card && event.target.dataset.option === "operation") syncWhen(card);
  });
  form.addEventListener("input", updatePreview);
  form.addEventListener("change", updatePreview);
  datasetSelect.addEventListener("change", refreshColumns);
  form.querySelector("[data-add-step]").addEventListener("click", () => {
    addStep({ kind: addKind.value, options: {} });
    updatePreview();
    list.lastElementChild?.querySelector("input, select")?.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const submit = form.querySelector("[data-editor-submit]");
    submit.disabled = true;
    const method = pipeline ? "PUT" : "POST";
    const url = pipeline ? `/api/pipelines/${pipeline.id}/` : "/api/pipelines/";
    try {
      const { ok, body } = await postJSON(url, payload(), { method });
      if (!ok) {
        showErrors(body);
        return;
      }
      onSaved?.(body);
    } catch (err) {
      showErrors({ detail: `The server could not be reached (${err.message}).` });
    } finally {
      submit.disabled = false;
    }
  });

  // --- initial state --------------------------------------------------------------------------------

  if (pipeline) {
    form.elements.name.value = pipeline.name;
    form.elements.description.value = pipeline.description || "";
    form.elements.schedule.value = pipeline.schedule || "";
    form.elements.max_concurrent_runs.value = String(pipeline.max_concurrent_runs);
    if (pipeline.dataset != null) datasetSelect.value = String(pipeline.dataset);
    for (const step of pipeline.steps || []) addStep(step);
  } else {
    form.elements.max_concurrent_runs.value = "1";
    const ready = datasets.find((d) => d.status === "ready");
    if (ready) datasetSelect.value = String(ready.id);
    for (const kind of ["validate_dataset", "train_model", "evaluate", "deploy_model"]) addStep({ kind, options: kind === "evaluate" ? { metric: "accuracy", threshold: 0.9 } : {} });
  }
  refreshColumns();
  updatePreview();
  return { payload, addStep };
}
