/*
 * nowplaying widget: shows what an account is playing on Spotify in every
 * `.np[data-endpoint]` container on the page.
 *
 * Live over Server-Sent Events when `data-events` is set, polling `data-endpoint`
 * otherwise (and while the stream is down). Everything from Spotify is treated
 * as hostile: the DOM is built with textContent/setAttribute only, and links and
 * images must be http(s). The state is exposed for styling and tests as
 * `data-state` plus `np--*` classes on the container. No dependencies, no build.
 */
(function () {
  "use strict";

  const STATES = ["playing", "paused", "idle", "ad", "reconnect", "not-connected", "loading"];
  const MAX_BACKOFF_MS = 60000;
  const FETCH_TIMEOUT_MS = 15000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  /**
   * Resolve `value` to an absolute http(s) URL, or null (javascript:, data:, junk...).
   * @param {unknown} value
   * @returns {string|null}
   */
  function safeUrl(value) {
    if (typeof value !== "string" || value.trim() === "") return null;
    try {
      const url = new URL(value, document.baseURI);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  const text = (v) => (typeof v === "string" ? v : "");
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  /** The source named beside the label, when it is not Spotify (whose widget this was first). */
  const VIA = { lastfm: " · via Last.fm", listenbrainz: " · via ListenBrainz", push: " · from a player" };

  function el(tag, className, attrs, content) {
    const node = document.createElement(tag);
    node.className = className;
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (content) node.textContent = content;
    return node;
  }

  function clock(ms) {
    const s = Math.floor(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  /** "5 min ago" for an ISO timestamp, or "" when it does not parse. */
  function ago(iso, now) {
    const t = Date.parse(text(iso));
    if (!Number.isFinite(t)) return "";
    const min = Math.floor((now - t) / 60000);
    if (min < 1) return "just now";
    if (min < 60) return min + " min ago";
    const h = Math.floor(min / 60);
    if (h < 24) return h + " h ago";
    const d = Math.floor(h / 24);
    return d === 1 ? "yesterday" : d + " days ago";
  }

  /** The neutral placeholder shown under missing or broken cover art: a note icon. */
  function noteIcon() {
    const svg = document.createElementNS(SVG_NS, "svg");
    const path = document.createElementNS(SVG_NS, "path");
    const attrs = { class: "np__placeholder", viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" };
    for (const [k, v] of Object.entries(attrs)) svg.setAttribute(k, v);
    path.setAttribute("d", "M9 18V5.5l11-2V16M9 18a3 3 0 1 1-6 0 3 3 0 0 1 6 0Zm11-2a3 3 0 1 1-6 0 3 3 0 0 1 6 0Z");
    svg.appendChild(path);
    return svg;
  }

  class Widget {
    /** @param {HTMLElement} root a `.np[data-endpoint]` container */
    constructor(root) {
      this.root = root;
      this.endpoint = root.dataset.endpoint;
      this.events = root.dataset.events || null;
      this.interval = Math.max(1000, parseInt(root.dataset.interval, 10) || 10000);
      this.reconnectUrl = safeUrl(root.dataset.reconnectUrl);
      this.source = null;
      this.pollTimer = this.retryTimer = this.tickTimer = 0;
      this.backoff = 2000;
      this.busy = false;
      this.playback = null; // {pos, dur, at, running}
      this.playedAt = null;
      const d = root.dataset;
      // A stream overlay: shown on a track change, faded after `fade` s (0: stays) or when paused.
      this.overlay = d.overlay === undefined ? null : { fade: Math.max(0, parseFloat(d.fade) || 0), paused: d.paused || "hide" };
      this.fadeTimer = 0;
      this.customise(d);
      this.build();
      // A new look (the owner's theme picker) may change the layout too.
      new MutationObserver(() => this.layout()).observe(root, { attributes: true, attributeFilter: ["data-theme"] });
      this.show("loading", { title: "Loading…", artist: "Spotify", announce: "" });
      document.addEventListener("visibilitychange", () => (document.hidden ? this.stop() : this.start()));
      if (!document.hidden) this.start();
    }

    /**
     * The card options (bg, text, accent, transparent, radius, width, hide, idle) as custom
     * properties and classes; CSSOM, which a strict CSP allows. Checked again here because
     * the element's attributes come straight from the host page.
     */
    customise(d) {
      this.owned = new Set(); // the owner's colours: theme=cover's never replace them
      const set = (k, v) => {
        this.owned.add("--np-" + k);
        this.root.style.setProperty("--np-" + k, v);
      };
      this.coverAccent = /^cover$/i.test(d.accent || ""); // accent=cover: the cover's, at each cover
      for (const k of ["bg", "text", "accent"]) {
        const hex = /^#?([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(d[k] || "");
        if (hex) set(k === "text" ? "fg" : k, "#" + hex[1]);
      }
      if (d.transparent === "true") for (const k of ["bg", "border", "shadow"]) set(k, k === "shadow" ? "none" : "transparent");
      // --np-radius/--np-width: only ever the owner's choice (the overlay's large card reads them).
      for (const k of ["radius", "width"]) if (/^\d{1,4}$/.test(d[k] || "")) for (const n of [k, k + "-px"]) set(n, d[k] + "px");
      for (const part of (d.hide || "").split(/[\s,]+/)) if (/^[a-z]+$/.test(part)) this.root.classList.add("np--no-" + part);
    }

    /** The theme asked for: the root's, or the <now-playing> host's. */
    theme() {
      const host = this.root.getRootNode().host;
      return this.root.dataset.theme === "host" && host ? host.getAttribute("theme") : this.root.dataset.theme;
    }

    /**
     * theme=cover: the cover's muted background and vivid accent, computed by the server as the
     * cards' are (every text at 4.5:1 or better), asked for at each new cover; the theme's own
     * colours without one. accent=cover in another theme: only the accent, made readable on
     * the theme shown (auto: light or dark, as the system is). A late answer for an older
     * cover is dropped.
     */
    async paint(src) {
      const page = /^(.*\/p\/[^/?#]+)\.json$/.exec(this.endpoint || "");
      let theme = this.theme() || "auto";
      const whole = theme === "cover";
      if (!(whole || this.coverAccent) || !page) return;
      if (theme === "auto") theme = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
      const url = page[1] + "/colours" + (whole ? "" : "?theme=" + encodeURIComponent(theme));
      this.painting = src;
      let props = {};
      if (src) {
        try {
          const res = await fetch(url, { credentials: "omit", cache: "no-store" });
          const body = res.ok ? await res.json() : null;
          if (this.painting !== src || !body || safeUrl(body.cover) !== src) return;
          props = body.properties || {};
          if (!whole) props = { "--np-accent": props["--np-accent"], "--np-accent-text": props["--np-accent-text"] };
        } catch (e) {
          return;
        }
      }
      for (const k of this.painted || []) if (!(k in props)) this.root.style.removeProperty(k);
      this.painted = [];
      for (const [k, v] of Object.entries(props)) {
        if (this.owned.has(k) || !/^--np-[a-z0-9-]+$/.test(k) || !/^(#[0-9a-f]{3,8}|rgba?\([0-9., ]+\))$/i.test(String(v))) continue;
        this.root.style.setProperty(k, v);
        this.painted.push(k);
      }
      this.root.dataset.painted = src || "";
    }

    /** Copy the look's layout (from themes.css) to data attributes that widget.css styles. */
    layout() {
      const css = getComputedStyle(this.root);
      for (const k of ["cover", "times", "label"]) this.root.dataset[k] = css.getPropertyValue("--np-" + k).trim();
    }

    build() {
      const r = this.root;
      if (!r.dataset.theme) r.dataset.theme = "auto";
      // The one live region is `announce`, outside the card: progress ticks and label
      // changes stay silent, and it speaks only when the track changes.
      const card = el("div", "np__card");
      const art = el("div", "np__art np__art--empty");
      const cover = el("img", "np__cover", { alt: "", decoding: "async", referrerpolicy: "no-referrer" });
      cover.hidden = true;
      cover.addEventListener("load", () => art.classList.remove("np__art--empty"));
      cover.addEventListener("error", () => {
        cover.hidden = true;
        art.classList.add("np__art--empty");
      });
      art.append(noteIcon(), cover);
      const eq = el("span", "np__eq", { "aria-hidden": "true" });
      for (let i = 0; i < 4; i++) eq.appendChild(el("span", "np__bar"));
      const label = el("span", "np__label");
      const stale = el("span", "np__stale", { title: "Couldn't refresh: showing the last known state" }, "Delayed");
      const meta = el("div", "np__meta");
      const brand = el("span", "np__brand", {}, "Spotify");
      meta.append(eq, label, stale, brand);
      const title = el("div", "np__title", { dir: "auto" });
      const artist = el("div", "np__artist", { dir: "auto" });
      const bar = el("div", "np__progress", { role: "progressbar", "aria-label": "Playback progress", "aria-valuemin": "0" });
      bar.appendChild(el("div", "np__progress-fill"));
      const times = el("div", "np__times", { "aria-hidden": "true" });
      times.append(el("span", ""), el("span", ""));
      const body = el("div", "np__body");
      body.append(meta, title, artist, bar, times);
      card.append(art, body);
      const announce = el("span", "np__announce", { role: "status", "aria-live": "polite", "aria-atomic": "true" });
      r.replaceChildren(card, announce);
      this.nodes = { art, cover, label, brand, title, artist, bar, times, announce };
    }

    /**
     * Render one payload from the endpoint or the event stream.
     * @param {object} data the `/api/spotify` JSON (or an `{error}` object)
     */
    render(data) {
      if (!data || typeof data !== "object") return this.failed();
      if (data.error === "unavailable") return this.failed();
      if (data.error) return this.showError(data.error);
      const now = Date.now();
      let at = num(data.at);
      if (at === null || Math.abs(now - at) > 5 * 60000) at = now; // absent, or a badly skewed clock
      const via = Object.prototype.hasOwnProperty.call(VIA, data.source);
      this.nodes.brand.textContent = via ? "" : "Spotify"; // another source's track: the dot alone
      if (data.type === "ad") {
        this.show("ad", { title: "Advertisement", artist: "Spotify will be right back" });
      } else if (text(data.title)) {
        const title = text(data.title);
        const artist = text(data.artist);
        const playing = data.isPlaying === true;
        const dur = num(data.durationMs);
        const pos = num(data.progressMs);
        this.show(playing ? "playing" : "paused", {
          title, artist, href: data.songUrl, external: true,
          image: data.albumImageUrl, alt: "Cover of " + (text(data.album) || title),
          label: (playing ? "Now playing" : "Paused") + (via ? VIA[data.source] : ""),
          progress: dur && pos !== null ? { pos, dur, at, running: playing } : null,
          announce: (playing ? "Now playing: " : "Paused: ") + title + (artist ? " by " + artist : ""),
        });
      } else if (data.notice && typeof data.notice === "object" && text(data.notice.message)) {
        // A source its owner keeps private (Last.fm's "hide recent listening"): say so.
        this.show("idle", {
          title: this.root.dataset.idleText || "Not playing", artist: text(data.notice.message),
          announce: "Not playing. " + text(data.notice.message),
        });
      } else if (this.root.dataset.idle !== "text" && data.lastPlayed && typeof data.lastPlayed === "object" && text(data.lastPlayed.title)) {
        const lp = data.lastPlayed;
        this.show("idle", {
          title: text(lp.title), artist: text(lp.artist), href: lp.songUrl, external: true,
          image: lp.albumImageUrl, alt: "Cover of " + text(lp.title), lastPlayed: text(lp.playedAt),
          announce: "Not playing. Last played: " + text(lp.title) + (text(lp.artist) ? " by " + text(lp.artist) : ""),
        });
      } else {
        this.show("idle", { title: this.root.dataset.idleText || "Not playing", artist: "Nothing on Spotify right now" });
      }
      this.root.classList.toggle("np--stale", data.stale === true);
    }

    /** The server refused: `reconnect_required` (token revoked) or `not_connected`. */
    showError(code) {
      this.root.classList.remove("np--stale");
      if (code === "reconnect_required") {
        const link = this.reconnectUrl;
        const title = link ? "Reconnect Spotify" : "Reconnect needed";
        this.show("reconnect", { title, href: link, artist: "Spotify access has expired" });
      } else {
        this.show("not-connected", { title: "Not connected", artist: "No Spotify account is linked" });
      }
    }

    /** A network error or 5xx: keep what is shown, marked stale. */
    failed() {
      if (this.root.dataset.state === "loading") {
        this.show("loading", { title: "Unavailable", artist: "Retrying shortly", announce: "" });
      }
      this.root.classList.add("np--stale");
    }

    /**
     * Put a view on screen. Nodes are only touched when their content changes, so a
     * focused link survives re-renders and screen readers hear nothing redundant.
     * @param {string} state one of STATES
     * @param {{title: string, artist: string, href?: unknown, external?: boolean, image?: unknown,
     *          alt?: string, label?: string, progress?: object|null, lastPlayed?: string,
     *          announce?: string}} v
     */
    show(state, v) {
      const r = this.root;
      const n = this.nodes;
      for (const s of STATES) r.classList.toggle("np--" + s, s === state);
      r.classList.toggle("np--last-played", v.lastPlayed !== undefined);
      r.classList.toggle("np--gone", state === "idle" && r.dataset.idle === "hide");
      r.dataset.state = state;

      const href = safeUrl(v.href);
      const titleKey = v.title + "\n" + href + "\n" + !!v.external;
      if (n.title.dataset.key !== titleKey) {
        n.title.dataset.key = titleKey;
        n.title.title = v.title;
        const attrs = v.external ? { href, target: "_blank", rel: "noopener noreferrer" } : { href };
        n.title.replaceChildren(href ? el("a", "np__link", attrs, v.title) : el("span", "np__text", {}, v.title));
      }
      if (n.artist.textContent !== v.artist) {
        n.artist.textContent = v.artist;
        n.artist.title = v.artist;
      }

      const src = safeUrl(v.image);
      if (n.cover.getAttribute("src") !== src) {
        n.art.classList.add("np__art--empty");
        if (src) n.cover.src = src;
        else n.cover.removeAttribute("src");
        if (src) r.style.setProperty("--np-cover-url", 'url("' + src + '")'); // an href: quotes are %22
        else r.style.removeProperty("--np-cover-url");
        n.cover.hidden = !src;
        this.paint(src);
      }
      n.cover.alt = v.alt || "";

      // Announce a new track, not a pause, a resume or a re-render of the same one.
      const heard = state === "playing" || state === "paused" ? "track\n" + v.title + "\n" + v.artist : state + "\n" + titleKey;
      const announce = v.announce !== undefined ? v.announce : v.title;
      if (n.announce.dataset.key !== heard && announce) n.announce.textContent = announce;
      n.announce.dataset.key = heard;
      if (this.overlay) this.present(state, heard);

      this.playback = v.progress || null;
      this.playedAt = v.lastPlayed !== undefined ? v.lastPlayed : null;
      if (this.endKey !== titleKey) this.fetchedAtEnd = false; // once per track
      this.endKey = titleKey;
      n.bar.hidden = !this.playback;
      this.layout();
      if (this.playedAt === null && n.label.textContent !== (v.label || "")) n.label.textContent = v.label || "";
      r.classList.add("np--jump"); // snap to the server's position instead of animating to it
      this.tick();
      requestAnimationFrame(() => requestAnimationFrame(() => r.classList.remove("np--jump")));
      this.syncTicker();
    }

    /** Overlay: appear on a new track (or a resume), fade after `fade` s, vanish when not playing. */
    present(state, heard) {
      const o = this.overlay;
      const visible = state === "playing" || (state === "paused" && o.paused !== "hide");
      if (!visible) return this.fade("state");
      if (heard === this.presented && this.faded !== "state") return;
      this.presented = heard;
      this.fade(null);
      clearTimeout(this.fadeTimer);
      if (o.fade > 0) this.fadeTimer = setTimeout(() => this.fade("time"), o.fade * 1000);
      requestAnimationFrame(() => this.marquee());
    }

    fade(why) {
      this.faded = why;
      this.root.classList.toggle("np--faded", why !== null);
      this.root.dataset.shown = String(why === null);
    }

    /** A title wider than its box scrolls to its end and back (CSS; none with reduced motion). */
    marquee() {
      const t = this.nodes.title;
      const over = t.scrollWidth - t.clientWidth;
      this.root.classList.toggle("np--marquee", over > 0);
      t.style.setProperty("--np-shift", -over + "px");
      t.style.setProperty("--np-scroll", Math.max(6, over / 40) + "s");
    }

    /** Advance the progress bar (and the "last played" age) from local time. */
    tick() {
      const now = Date.now();
      const p = this.playback;
      if (p) {
        const pos = Math.min(p.dur, Math.max(0, p.pos + (p.running ? Math.max(0, now - p.at) : 0)));
        const bar = this.nodes.bar;
        this.root.style.setProperty("--np-progress", (pos / p.dur).toFixed(4));
        bar.setAttribute("aria-valuemax", String(Math.round(p.dur / 1000)));
        bar.setAttribute("aria-valuenow", String(Math.floor(pos / 1000)));
        bar.setAttribute("aria-valuetext", clock(pos) + " of " + clock(p.dur));
        const [elapsed, left] = this.nodes.times.children;
        elapsed.textContent = clock(pos);
        left.textContent = "-" + clock(p.dur - pos);
        if (p.running && pos >= p.dur && !this.fetchedAtEnd) {
          this.fetchedAtEnd = true;
          if (!this.source || this.source.readyState !== EventSource.OPEN) setTimeout(() => this.refresh(), 1500);
        }
      }
      if (this.playedAt !== null) {
        const age = ago(this.playedAt, now);
        const label = age ? "Last played · " + age : "Last played";
        if (this.nodes.label.textContent !== label) this.nodes.label.textContent = label;
      }
    }

    syncTicker() {
      const wanted = !document.hidden && ((this.playback && this.playback.running) || this.playedAt !== null);
      if (wanted && !this.tickTimer) this.tickTimer = setInterval(() => this.tick(), 1000);
      if (!wanted && this.tickTimer) this.tickTimer = clearInterval(this.tickTimer) || 0;
    }

    /** Begin (or resume) updates: one fetch now, then the event stream or polling. */
    start() {
      this.stop();
      this.refresh();
      if (this.events && typeof EventSource === "function") this.openStream();
      else this.poll();
      this.syncTicker();
    }

    /** Pause all network activity and timers (the tab is hidden). */
    stop() {
      if (this.source) this.source.close();
      this.source = null;
      this.retryTimer = clearTimeout(this.retryTimer) || 0;
      this.stopPolling();
      this.syncTicker();
    }

    poll() {
      if (!this.pollTimer) this.pollTimer = setInterval(() => this.refresh(), this.interval);
    }

    stopPolling() {
      this.pollTimer = clearInterval(this.pollTimer) || 0;
    }

    /** Open the event stream; on error poll instead and retry with jittered backoff. */
    openStream() {
      this.retryTimer = 0;
      let es;
      try {
        es = new EventSource(this.events);
      } catch (_) {
        return this.poll();
      }
      this.source = es;
      const onMessage = (e) => {
        let data;
        try {
          data = JSON.parse(e.data);
        } catch (_) {
          return;
        }
        this.backoff = 2000; // reset on data, not on open: a server that accepts then drops should back off
        this.render(data);
      };
      es.addEventListener("message", onMessage);
      es.addEventListener("nowplaying", onMessage);
      es.addEventListener("open", () => this.stopPolling());
      es.addEventListener("error", () => {
        if (this.source !== es) return;
        es.close();
        this.source = null;
        this.refresh();
        this.poll();
        const delay = Math.min(MAX_BACKOFF_MS, this.backoff * (0.75 + Math.random() * 0.5));
        this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
        this.retryTimer = setTimeout(() => this.openStream(), delay);
      });
    }

    /** Fetch the endpoint once and render the answer; failures keep the last view, marked stale. */
    async refresh() {
      if (this.busy || document.hidden) return;
      this.busy = true;
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
      try {
        const res = await fetch(this.endpoint, {
          credentials: "same-origin", cache: "no-store",
          headers: { Accept: "application/json" }, signal: ctl.signal,
        });
        const body = await res.json().catch(() => null);
        if (res.ok && body) this.render(body);
        else if (res.status === 401) this.showError(body && body.error);
        else this.failed();
      } catch (_) {
        this.failed(); // offline, refused, timed out: nothing to log
      } finally {
        clearTimeout(timer);
        this.busy = false;
      }
    }
  }

  const started = new WeakSet();
  function init() {
    for (const root of document.querySelectorAll(".np[data-endpoint]")) {
      if (started.has(root)) continue;
      started.add(root);
      new Widget(root);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();

  /*
   * <now-playing src="https://host/p/ID" theme="dark" accent="e91e63"></now-playing>: the widget
   * in a Shadow DOM, no iframe. Its styles are linked from the host, so a page whose CSP allows
   * the host (script, style, connect and img) needs nothing inline. Themable from outside with
   * the CSS custom properties (--np-bg, --np-fg, --np-accent, --np-radius, --np-width...).
   * Loaded as https://host/p/ID/embed.js, elements without `src` show that ID, and a page with
   * no element gets one where the script stands.
   */
  const script = document.currentScript;
  const own = script && /^(.*\/p\/[A-Za-z0-9_-]+)\/embed\.js(?:\?.*)?$/.exec(script.src);
  const ATTRS = ["theme", "size", "bg", "text", "accent", "transparent", "radius", "width", "hide", "idle", "idle-text"];
  if (window.customElements && !customElements.get("now-playing")) {
    customElements.define("now-playing", class extends HTMLElement {
      connectedCallback() {
        const page = safeUrl(this.getAttribute("src") || (own ? own[1] : ""));
        if (this.shadowRoot || !page) return;
        const origin = new URL(page).origin;
        if (!this.hasAttribute("theme")) this.setAttribute("theme", "auto");
        // The look is set on the host (:host([theme])), so page CSS on now-playing wins over it.
        const root = el("div", "np", { "data-endpoint": page + ".json", "data-events": page + "/events", "data-theme": "host" });
        for (const a of ATTRS) {
          const v = this.getAttribute(a);
          if (v !== null && a !== "theme") root.dataset[a.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = v;
        }
        const widget = new Widget(root);
        const links = ["themes", "widget", "element"].map((name) => {
          const link = el("link", "", { rel: "stylesheet", href: origin + "/static/" + name + ".css" });
          link.addEventListener("load", () => widget.layout());
          return link;
        });
        this.attachShadow({ mode: "open" }).append(...links, root);
      }
    });
  }
  if (own && !document.querySelector("now-playing")) {
    // <script ... data-theme="dark" data-accent="e91e63">: the placed element's attributes.
    const made = document.createElement("now-playing");
    for (const [k, v] of Object.entries(script.dataset)) made.setAttribute(k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), v);
    script.after(made);
  }
})();
