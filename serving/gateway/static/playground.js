/* The playground: pick a model (app, adapter, adapter version or base) from /v1/models, chat
   with it, or send the same question to two models side by side. `?model=NAME&compare=NAME`
   preselects them. The API key lives in this page's memory (or this tab's sessionStorage). */
"use strict";

const { el } = HybridChat;
const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "hybrid.playground.key";
const KINDS = [
  ["app", "Apps"],
  ["adapter", "Adapters (current version)"],
  ["adapter_version", "Adapter versions"],
  ["base", "Base model"],
];

const page = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  models: new Map(),
  panes: [],
  controller: null,
};

function status(text, kind = "error") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function describe(card) {
  const info = card.hybrid || {};
  if (info.kind === "app") {
    const parts = [`app ${card.id}`, `knowledge base ${info.knowledge_base}`];
    parts.push(info.adapter ? `adapter ${info.adapter}` : "base model");
    return parts.join(" · ");
  }
  if (info.kind === "adapter") return `adapter, serving ${card.root}`;
  if (info.kind === "adapter_version") {
    return `adapter version${info.current ? " (current)" : ""}${info.loaded ? ", loaded" : ""}`;
  }
  return "base model";
}

function optionLabel(card) {
  const info = card.hybrid || {};
  if (info.kind === "app" && info.title && info.title !== card.id)
    return `${info.title} (${card.id})`;
  if (info.kind === "adapter_version" && info.current) return `${card.id} (current)`;
  return card.id;
}

class Pane {
  constructor(slot) {
    this.title = el("h2", { id: `pane-${slot}-title` });
    this.meta = el("p", { class: "pane-meta" });
    this.log = el("div", {
      id: `pane-${slot}-log`,
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-labelledby": `pane-${slot}-title`,
      tabindex: "0",
    });
    this.element = el(
      "section",
      { class: "pane", "aria-labelledby": `pane-${slot}-title`, "data-slot": slot },
      el("header", { class: "pane-head" }, this.title, this.meta),
      this.log,
    );
    this.card = null;
  }

  show(card) {
    const changed = !this.card || this.card.id !== card.id;
    this.card = card;
    const info = card.hybrid || {};
    this.title.textContent = info.kind === "app" && info.title ? info.title : card.id;
    this.meta.textContent = describe(card);
    const { accent, onAccent } = HybridChat.brand(info.kind === "app" ? info.color : null);
    this.element.style.setProperty("--hy-accent", accent);
    this.element.style.setProperty("--hy-on-accent", onAccent);
    if (changed) this.reset();
  }

  reset() {
    this.history = [];
    this.log.replaceChildren();
    const greeting = this.card && this.card.hybrid && this.card.hybrid.greeting;
    if (greeting) HybridChat.addMessage(this.log, "assistant", greeting);
  }

  async ask(question, signal) {
    HybridChat.addMessage(this.log, "user", question);
    const answer = HybridChat.addMessage(this.log, "assistant");
    const messages = [...this.history, { role: "user", content: question }];
    this.log.setAttribute("aria-busy", "true"); // announced once complete, not word by word
    try {
      const result = await HybridChat.streamChat({
        base: "",
        key: page.key,
        model: this.card.id,
        messages,
        signal,
        onText: (piece) => answer.append(piece),
      });
      answer.finish(result);
      this.history = [...messages, { role: "assistant", content: answer.text }];
    } catch (error) {
      answer.fail(error);
      if (error.status === 401) askForKey(error.message);
    } finally {
      this.log.setAttribute("aria-busy", "false");
    }
  }
}

function askForKey(message) {
  status(`${message}: enter an API key above.`);
  $("api-key").focus();
}

function fillSelect(select, wanted) {
  const groups = KINDS.map(([kind, label]) => {
    const options = [...page.models.values()]
      .filter((card) => (card.hybrid || {}).kind === kind)
      .map((card) => el("option", { value: card.id }, optionLabel(card)));
    return options.length ? el("optgroup", { label }, ...options) : null;
  });
  select.replaceChildren(...groups.filter(Boolean));
  if (wanted && page.models.has(wanted)) select.value = wanted;
}

function baseName() {
  const base = [...page.models.values()].find((c) => (c.hybrid || {}).kind === "base");
  return base ? base.id : null;
}

/* What to compare a model with: its adapter's base, else another version, else anything. */
function counterpart(id) {
  const card = page.models.get(id);
  const kind = card && (card.hybrid || {}).kind;
  if (kind === "adapter_version") {
    const name = id.split("@")[0];
    const sibling = [...page.models.keys()].find((m) => m !== id && m.startsWith(`${name}@`));
    if (sibling) return sibling;
  }
  const base = baseName();
  if (base && base !== id) return base;
  return [...page.models.keys()].find((m) => m !== id) || id;
}

function layout() {
  const compare = $("compare").checked;
  $("model-b-field").hidden = !compare;
  const active = compare ? page.panes : page.panes.slice(0, 1);
  $("panes").replaceChildren(...active.map((p) => p.element));
  page.panes[0].show(page.models.get($("model-a").value));
  if (compare) page.panes[1].show(page.models.get($("model-b").value));
}

async function loadModels() {
  status("Loading models…", "info");
  let cards;
  try {
    cards = await HybridChat.listModels("", page.key);
  } catch (error) {
    if (error.status === 401) askForKey(error.message);
    else status(`Could not list the models: ${error.message}`);
    return;
  }
  if (!cards.length) {
    status("This key may use no model.");
    return;
  }
  page.models = new Map(cards.map((card) => [card.id, card]));
  const query = new URLSearchParams(location.search);
  const firstApp = cards.find((c) => (c.hybrid || {}).kind === "app");
  const a = [$("model-a").value, query.get("model"), firstApp && firstApp.id, cards[0].id].find(
    (m) => m && page.models.has(m),
  );
  fillSelect($("model-a"), a);
  const b = [$("model-b").value, query.get("compare")].find((m) => m && page.models.has(m));
  fillSelect($("model-b"), b || counterpart(a));
  if (query.has("compare") && !page.panes[0].card) $("compare").checked = true;
  status("");
  layout();
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
  $("model-a").disabled = $("model-b").disabled = $("compare").disabled = on;
}

async function send(event) {
  event.preventDefault();
  const question = $("message").value.trim();
  if (!question || page.controller || !page.panes[0].card) return;
  $("message").value = "";
  status("");
  page.controller = new AbortController();
  busy(true);
  const active = $("compare").checked ? page.panes : page.panes.slice(0, 1);
  try {
    await Promise.all(active.map((pane) => pane.ask(question, page.controller.signal)));
  } finally {
    page.controller = null;
    busy(false);
    $("message").focus();
  }
}

function start() {
  page.panes = [new Pane("a"), new Pane("b")];
  $("api-key").value = page.key;
  $("remember-key").checked = !!sessionStorage.getItem(KEY_STORAGE);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    page.key = $("api-key").value.trim();
    if ($("remember-key").checked && page.key) sessionStorage.setItem(KEY_STORAGE, page.key);
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });
  $("model-a").addEventListener("change", () => {
    const b = $("model-b");
    if (!b.dataset.chosen || b.value === $("model-a").value)
      b.value = counterpart($("model-a").value);
    layout();
  });
  $("model-b").addEventListener("change", () => {
    $("model-b").dataset.chosen = "1";
    layout();
  });
  $("compare").addEventListener("change", layout);
  $("composer").addEventListener("submit", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => page.controller && page.controller.abort());
  $("clear").addEventListener("click", () => {
    for (const pane of page.panes) pane.reset();
    $("message").focus();
  });
  loadModels();
}

start();
