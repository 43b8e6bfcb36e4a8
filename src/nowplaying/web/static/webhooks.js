/*
 * The owner's webhooks: list them with their recent deliveries, add one (its secret is shown
 * once), delete one, send a test event. Same-origin JSON (/api/account/webhooks); every value is
 * put in the page as text, never as markup.
 */
(function () {
  "use strict";
  const list = document.getElementById("np-hooks");
  const form = document.getElementById("np-hook-form");
  const secret = document.getElementById("np-hook-secret");
  if (!list || !form || !secret) return;

  async function call(method, path, body) {
    const res = await fetch("/api/account/webhooks" + path, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 || res.status === 202 ? {} : await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || data.error || "request failed");
    return data;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function button(label, action, id) {
    const b = el("button", label, "btn");
    b.type = "button";
    b.dataset.npHook = action;
    b.dataset.id = id;
    return b;
  }

  let again = null;

  async function refresh() {
    const data = await call("GET", "");
    clearTimeout(again);
    const pending = data.webhooks.some((h) => h.deliveries.some((d) => d.status === "pending"));
    if (pending) again = setTimeout(() => refresh().catch(() => {}), 1000); // until it settles
    list.replaceChildren();
    for (const hook of data.webhooks) {
      const item = el("li", undefined, "stack");
      item.append(el("code", hook.url));
      const actions = el("div", undefined, "actions");
      actions.append(button("Send test event", "test", hook.id), button("Delete", "delete", hook.id));
      item.append(actions);
      const sent = el("ul", undefined, "muted");
      for (const d of hook.deliveries.slice(0, 5)) {
        sent.append(el("li", d.at + " " + d.event + ": " + d.status + " (" + d.attempts + "x) " + d.detail));
      }
      if (!hook.deliveries.length) sent.append(el("li", "Nothing sent yet."));
      item.append(sent);
      list.append(item);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("np-hook-url");
    try {
      const made = await call("POST", "", { url: input.value });
      secret.textContent = "Signing secret (shown once, keep it): " + made.secret;
      secret.hidden = false;
      input.value = "";
      await refresh();
    } catch (e) {
      window.alert("Could not add: " + e.message);
    }
  });

  list.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target.closest("button[data-np-hook]") : null;
    if (!target) return;
    const id = encodeURIComponent(target.dataset.id);
    try {
      if (target.dataset.npHook === "delete") {
        if (!window.confirm("Delete this webhook?")) return;
        await call("DELETE", "/" + id);
      } else {
        await call("POST", "/" + id + "/test", {});
      }
      await refresh();
    } catch (e) {
      window.alert("Could not do it: " + e.message);
    }
  });

  refresh().catch(() => {});
})();
