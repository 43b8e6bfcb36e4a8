/*
 * Owner controls on the home page: publish, rotate, unpublish, the last-played setting, unlinking
 * a source, and copy buttons for the snippets. Talks to the same-origin JSON API (/api/account/...), then
 * reloads so the server renders the new state. No inline script; CSP-friendly.
 */
(function () {
  "use strict";

  /** POST to the owner API; returns the JSON answer or throws. */
  async function post(action, body) {
    const res = await fetch("/api/account/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || data.error || "request failed");
    return data;
  }

  const confirmations = {
    rotate: "Change the link? Every copy of the old one stops working.",
    unpublish: "Unpublish? Every link to your widget stops working.",
    "push-token": "Make a new push token? Players still using the old one are refused until you paste the new one.",
  };

  document.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    const button = target && target.closest("button[data-np-action]");
    if (button) {
      const action = button.getAttribute("data-np-action");
      if (confirmations[action] && !window.confirm(confirmations[action])) return;
      button.disabled = true;
      try {
        await post(action);
        window.location.reload();
      } catch (e) {
        button.disabled = false;
        window.alert("Could not " + action + ": " + e.message);
      }
      return;
    }
    const unlink = target && target.closest("button[data-np-unlink]");
    if (unlink) {
      const kind = unlink.getAttribute("data-np-unlink");
      if (!window.confirm("Unlink " + kind + "? The widget stops reading it.")) return;
      unlink.disabled = true;
      const res = await fetch("/api/account/sources/" + encodeURIComponent(kind), {
        method: "DELETE",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const data = await res.json().catch(() => ({}));
      if (res.ok) window.location.reload();
      else {
        unlink.disabled = false;
        window.alert(data.message || "Could not unlink " + kind);
      }
      return;
    }
    const copy = target && target.closest("button[data-np-copy]");
    if (copy) {
      const field = document.getElementById(copy.getAttribute("data-np-copy"));
      if (!field) return;
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        copy.textContent = "Copied";
      } catch (_) {
        copy.textContent = "Press Ctrl+C";
      }
    }
  });

  /** The theme picker: the owner's widget, the card preview and the themed snippets follow it. */
  function pickTheme(select) {
    const theme = select.value;
    const widget = document.getElementById("np-widget");
    if (widget) widget.dataset.theme = theme;
    for (const node of document.querySelectorAll("[data-np-themed]")) {
      if (node instanceof HTMLImageElement) node.src = node.src.replace(/theme=[a-z]+/, "theme=" + theme);
      else if (node instanceof HTMLTextAreaElement) node.value = node.value.replace(/theme=("?)[a-z]+/g, "theme=$1" + theme);
    }
    const size = select.selectedOptions[0];
    const iframe = document.getElementById("snip-iframe");
    if (iframe && size) {
      iframe.value = iframe.value.replace(/width="\d+" height="\d+"/, 'width="' + size.dataset.width + '" height="' + size.dataset.height + '"');
    }
  }

  document.addEventListener("change", async (event) => {
    if (event.target instanceof HTMLSelectElement && event.target.hasAttribute("data-np-theme")) {
      return pickTheme(event.target);
    }
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.getAttribute("data-np-action") !== "settings") {
      return;
    }
    box.disabled = true;
    try {
      const data = await post("settings", { lastPlayed: box.checked });
      if (data.reconsentUrl) window.location.assign(data.reconsentUrl);
    } catch (e) {
      box.checked = !box.checked;
      window.alert("Could not save: " + e.message);
    } finally {
      box.disabled = false;
    }
  });
})();
