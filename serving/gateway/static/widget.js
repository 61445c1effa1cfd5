/* The embeddable chat widget (served as /widget.js, wrapped with chat.js and WIDGET_CSS):

     <script src="https://GATEWAY/widget.js" data-app="APP" data-key="KEY" async></script>

   Optional: data-open="true" starts with the panel open. The gateway's address is where the
   script came from. The key is visible to every visitor: use one scoped to this app only. */
const script = document.currentScript;
const gateway = script.src.replace(/\/widget\.js(\?.*)?$/, "");
const appName = script.dataset.app;
const key = script.dataset.key || "";
const { el } = HybridChat;
const HISTORY_LIMIT = 12;

function warnIfKeyNotScoped() {
  HybridChat.listModels(gateway, key).then(
    (cards) => {
      const others = cards.map((c) => c.id).filter((id) => id !== appName);
      if (others.length) {
        console.warn(
          `Hybrid widget: the key in this page may also use ${others.join(", ")}; anyone ` +
            `reading the page can. Use a key scoped to '${appName}' only: ` +
            `hybrid keys new --name site --model ${appName}`,
        );
      }
    },
    () => {},
  );
}

function chatIcon() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute(
    "d",
    "M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H10l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z",
  );
  for (const [name, value] of Object.entries({
    viewBox: "0 0 24 24",
    width: "26",
    height: "26",
    fill: "currentColor",
    "aria-hidden": "true",
  })) {
    svg.setAttribute(name, value);
  }
  svg.append(path);
  return svg;
}

function mount(card) {
  const info = card.hybrid || {};
  const title = info.title || card.id;
  const { accent, onAccent } = HybridChat.brand(info.color);
  const host = el("div", { class: "hybrid-widget", "data-app": appName });
  const root = host.attachShadow({ mode: "open" });
  if ("adoptedStyleSheets" in root) {
    // A constructed sheet is not inline CSS: it works under a site's strict CSP too.
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(WIDGET_CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.append(el("style", {}, WIDGET_CSS));
  }

  const log = el("div", {
    class: "hy-log",
    role: "log",
    "aria-live": "polite",
    "aria-label": `Conversation with ${title}`,
  });
  const input = el("textarea", { id: "hy-input", rows: "1", placeholder: "Ask a question…" });
  const sendButton = el("button", { type: "submit", class: "hy-send" }, "Send");
  const form = el(
    "form",
    { class: "hy-form" },
    el("label", { class: "hy-sr", for: "hy-input" }, `Message to ${title}`),
    input,
    sendButton,
  );
  const close = el(
    "button",
    { type: "button", class: "hy-close", "aria-label": "Close chat" },
    "×",
  );
  const panel = el(
    "section",
    { class: "hy-panel", id: "hy-panel", role: "dialog", "aria-label": title, hidden: true },
    el("header", { class: "hy-head" }, el("h2", {}, title), close),
    log,
    form,
    el("p", { class: "hy-foot" }, "Answers cite their sources. Powered by Hybrid."),
  );
  const bubble = el(
    "button",
    {
      type: "button",
      class: "hy-bubble",
      "aria-label": `Chat with ${title}`,
      "aria-expanded": "false",
      "aria-controls": "hy-panel",
    },
    chatIcon(),
  );
  for (const node of [panel, bubble]) {
    node.style.setProperty("--hy-accent", accent);
    node.style.setProperty("--hy-on-accent", onAccent);
  }
  root.append(panel, bubble);

  function setOpen(open, focus = true) {
    panel.hidden = !open;
    bubble.setAttribute("aria-expanded", String(open));
    if (focus) (open ? input : bubble).focus();
  }
  bubble.addEventListener("click", () => setOpen(panel.hidden));
  close.addEventListener("click", () => setOpen(false));
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") setOpen(false);
  });

  if (info.greeting) HybridChat.addMessage(log, "assistant", info.greeting);
  let history = [];
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || busy) return;
    busy = sendButton.disabled = true;
    input.value = "";
    HybridChat.addMessage(log, "user", question);
    const answer = HybridChat.addMessage(log, "assistant");
    const messages = [...history, { role: "user", content: question }].slice(-HISTORY_LIMIT);
    log.setAttribute("aria-busy", "true");
    try {
      answer.finish(
        await HybridChat.streamChat({
          base: gateway,
          key,
          model: appName,
          messages,
          onText: (piece) => answer.append(piece),
        }),
      );
      history = [...messages, { role: "assistant", content: answer.text }];
    } catch (error) {
      answer.fail(error);
    } finally {
      log.setAttribute("aria-busy", "false");
      busy = sendButton.disabled = false;
      input.focus();
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  document.body.append(host);
  if (script.dataset.open === "true") setOpen(true, false); // never steal the page's focus
}

if (!appName) {
  console.error('Hybrid widget: add data-app="APP NAME" to its <script> tag');
} else {
  HybridChat.getModel(gateway, key, appName).then(
    (card) => {
      if (document.body) mount(card);
      else document.addEventListener("DOMContentLoaded", () => mount(card));
      if (key) warnIfKeyNotScoped();
    },
    (error) =>
      console.error(
        `Hybrid widget: cannot load app '${appName}' from ${gateway}: ${error.message}`,
      ),
  );
}
