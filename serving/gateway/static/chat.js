/* Hybrid chat core, shared by the playground and the widget: the gateway's OpenAI routes (models,
   streamed chat completions ending with the `hybrid` notes) and the rendering of one answer with
   its sources and grounding flags. Model output is only ever set as text, never as HTML. */
const HybridChat = (() => {
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function headers(key, json) {
    const h = {};
    if (key) h.Authorization = `Bearer ${key}`;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  async function call(base, path, key, init = {}) {
    let response;
    try {
      response = await fetch(base + path, { ...init, headers: headers(key, !!init.body) });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(`cannot reach the gateway at ${base || location.origin}`, 0);
    }
    if (response.ok) return response;
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error.message || message;
    } catch (_) {
      /* not an OpenAI error body: keep the status line */
    }
    throw new ApiError(message, response.status);
  }

  async function listModels(base, key) {
    return (await (await call(base, "/v1/models", key)).json()).data;
  }

  async function getModel(base, key, id) {
    return (await call(base, `/v1/models/${encodeURIComponent(id)}`, key)).json();
  }

  /* Streams one answer, calling onText(piece) for each piece of text; resolves to
     {model, notes}: the model that answered and the `hybrid` notes (null for a plain model). */
  async function streamChat({ base, key, model, messages, signal, onText }) {
    const body = JSON.stringify({ model, messages, stream: true });
    const response = await call(base, "/v1/chat/completions", key, {
      method: "POST",
      body,
      signal,
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const result = { model, notes: null };
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return result;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return result;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new ApiError(chunk.error.message, chunk.error.code || 0);
          if (chunk.model) result.model = chunk.model;
          if (chunk.hybrid) result.notes = chunk.hybrid;
          for (const choice of chunk.choices || []) {
            const piece = choice.delta && choice.delta.content;
            if (piece && !choice.index) onText(piece);
          }
        }
      }
    }
  }

  /* el("p", {class: "x", onclick: f}, "text", child) */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  /* The app's #rrggbb brand colour (else the default) and the text colour readable on it. */
  function brand(color) {
    const accent = /^#[0-9a-f]{6}$/i.test(color || "") ? color : "#2f6fed";
    const [r, g, b] = [1, 3, 5]
      .map((i) => parseInt(accent.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    const light = 0.2126 * r + 0.7152 * g + 0.0722 * b; // WCAG relative luminance
    const white = 1.05 / (light + 0.05);
    const onAccent = white >= 4.5 || white >= (light + 0.05) / 0.05 ? "#ffffff" : "#111111";
    return { accent, onAccent };
  }

  let counter = 0;

  function where(source) {
    return source.page ? `${source.file_name}, page ${source.page}` : source.file_name;
  }

  function sourceItem(id, source, label) {
    const range =
      source.start_char !== null && source.start_char !== undefined
        ? `, characters ${source.start_char}–${source.end_char}`
        : "";
    return el(
      "details",
      { class: `hy-source hy-${label}`, id: `${id}-src-${source.index}` },
      el(
        "summary",
        {},
        el("span", { class: "hy-num" }, `[${source.index}]`),
        ` ${source.file_name || source.source || "passage"}`,
        source.page ? ` · p. ${source.page}` : "",
        el("span", { class: "hy-tag" }, label),
      ),
      el("blockquote", { class: "hy-passage" }, source.snippet || ""),
      el("p", { class: "hy-where" }, `${where(source)}${range}`),
    );
  }

  function flag(kind, text) {
    const symbol = { ok: "✓ ", warn: "⚠ ", info: "" }[kind];
    return el(
      "p",
      { class: `hy-flag hy-${kind}` },
      el("span", { "aria-hidden": "true" }, symbol),
      text,
    );
  }

  function groundingFlags(grounding) {
    const flags = [];
    if (grounding.grounded) {
      const what = grounding.checked
        ? `the figures and names it states are in the sources (${grounding.checked} checked)`
        : "it states no figures or names to check";
      flags.push(flag("ok", `Grounded: ${what}`));
    } else {
      const claims = grounding.ungrounded.map((c) => `“${c.text}” (${c.kind})`).join(", ");
      flags.push(flag("warn", `Not in the sources: ${claims}`));
    }
    const unknown = grounding.unknown_citations || [];
    if (unknown.length) {
      const cited = unknown.map((n) => `[${n}]`).join(", ");
      flags.push(flag("warn", `Cites ${cited}, which is not one of the sources`));
    }
    return flags;
  }

  /* The notes under an app's answer: fallback flag, grounding flags, cited then other sources. */
  function renderNotes(id, notes) {
    const box = el("div", { class: "hy-notes" });
    if (notes.no_context) {
      box.append(
        flag("info", "No passage matched the question: this is the app's fallback answer."),
      );
    } else if (notes.grounding) {
      box.append(...groundingFlags(notes.grounding));
    }
    const cited = notes.citations || [];
    const citedIndex = new Set(cited.map((c) => c.index));
    const others = (notes.sources || []).filter((s) => !citedIndex.has(s.index));
    if (cited.length || others.length) {
      const list = el("div", { class: "hy-sources", role: "group", "aria-label": "Sources" });
      list.append(
        el("p", { class: "hy-sources-title" }, cited.length ? "Sources" : "Retrieved, not cited"),
      );
      for (const c of cited)
        list.append(sourceItem(id, c, c.how === "marker" ? "cited" : "matched"));
      for (const s of others) list.append(sourceItem(id, s, "retrieved"));
      box.append(list);
    }
    return box;
  }

  /* The answer text with each [n] that names a source turned into a button opening it. */
  function linkMarkers(text, id, indexes, root) {
    const out = [];
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      if (!indexes.has(Number(match[1]))) continue;
      out.push(text.slice(last, match.index));
      const target = `${id}-src-${match[1]}`;
      out.push(
        el(
          "button",
          {
            type: "button",
            class: "hy-marker",
            "aria-label": `source ${match[1]}`,
            onclick: () => {
              const source = root.querySelector(`#${target}`);
              source.open = true;
              source.querySelector("summary").focus();
            },
          },
          match[0],
        ),
      );
      last = match.index + match[0].length;
    }
    out.push(text.slice(last));
    return out;
  }

  /* One message appended to `log` (a role="log" element); an assistant message streams with
     append(piece), then finish({model, notes}) or fail(error). */
  function addMessage(log, role, text = "") {
    const id = `hy-m${++counter}`;
    const body = el("p", { class: "hy-text" }, text);
    const who = el("span", { class: "hy-sr" }, role === "user" ? "You: " : "Answer: ");
    const item = el("div", { class: `hy-msg hy-${role}`, id }, who, body);
    log.append(item);
    log.scrollTop = log.scrollHeight;
    let content = text;
    return {
      element: item,
      get text() {
        return content;
      },
      append(piece) {
        content += piece;
        body.textContent = content;
        item.classList.add("hy-streaming");
        log.scrollTop = log.scrollHeight;
      },
      finish({ model, notes }) {
        item.classList.remove("hy-streaming");
        if (!content) body.textContent = content = "(empty answer)";
        if (notes) {
          const indexes = new Set((notes.sources || []).map((s) => s.index));
          body.replaceChildren(...linkMarkers(content, id, indexes, item));
          item.append(renderNotes(id, notes));
        }
        const served = notes ? notes.served_by : model; // none: the app's fixed answer
        if (served) item.append(el("p", { class: "hy-served" }, `answered by ${served}`));
        log.scrollTop = log.scrollHeight;
      },
      fail(error) {
        item.classList.remove("hy-streaming");
        item.classList.add("hy-failed");
        const stopped = error.name === "AbortError";
        item.append(
          el("p", { class: "hy-error" }, stopped ? "Stopped." : `Error: ${error.message}`),
        );
      },
    };
  }

  return { ApiError, listModels, getModel, streamChat, addMessage, brand, el };
})();
