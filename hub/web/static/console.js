/* Kemnaker contact hub — the console's little JavaScript. No framework.
 *
 * Live updates over server-sent events (/api/v1/events): the queue and the ticket being
 * viewed re-fetch their server-rendered fragments and swap them in. Also: the WhatsApp window
 * countdown, "someone else is viewing/typing", keyboard shortcuts, drafts kept across reloads,
 * presence and claim heartbeats. Every text shown comes from the page (data-* attributes) or
 * from server-rendered, escaped HTML; data from events is only ever set with textContent.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");
  var body = document.body;
  var page = body.dataset.page || "";
  var me = body.dataset.me || "";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var ticketId = body.dataset.ticketId || "";
  var ticketRef = body.dataset.ticketRef || "";
  var lastActivity = Date.now();

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function postJSON(url, data, keepalive) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(data)
    }).then(function (r) { return r.ok ? r.json() : null; }).catch(function () { return null; });
  }

  /* Replace the element #id with the same element from a server-rendered fragment. */
  function swap(id, url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected && /\/login/.test(r.url)) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) { return null; }
        var old = document.getElementById(id);
        if (!old) { return null; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(id);
        if (!fresh) { return null; }
        var focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement.id : "";
        fresh = document.importNode(fresh, true);
        old.replaceWith(fresh);
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        return fresh;
      })
      .catch(function () { return null; });
  }

  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }

  /* ---- live indicator and the event stream ---------------------------------------- */

  var live = $("#live");
  function setLive(state) {
    if (!live) { return; }
    live.dataset.state = state;
    var text = live.dataset["label" + state.charAt(0).toUpperCase() + state.slice(1)] || state;
    $(".live-text", live).textContent = text;
  }

  var TYPES = ["message.received", "reply.queued", "reply.state", "reply.status", "ticket.claimed",
    "ticket.assigned", "ticket.released", "ticket.note", "ticket.status", "ticket.transferred",
    "ticket.priority", "ticket.category", "ticket.merged", "ticket.viewing", "queue.waiting", "agent.presence", "message",
    "call.ringing", "call.answered", "call.hangup", "ticket.sla", "alert.fired", "alert.cleared"];

  function startEvents(onEvent) {
    if (!window.EventSource || !live) { return; }
    var since = body.dataset.eventsSince || "";
    var failures = 0;
    function connect() {
      var url = "/api/v1/events" + (since ? "?since=" + encodeURIComponent(since) : "");
      var es = new EventSource(url);
      es.onopen = function () { failures = 0; setLive("live"); };
      es.onerror = function () {
        if (es.readyState === EventSource.CLOSED) {
          failures += 1;
          setLive("offline");
          if (failures < 20) { setTimeout(connect, Math.min(30000, 1000 * failures)); }
        } else {
          setLive("connecting");
        }
      };
      TYPES.forEach(function (type) {
        es.addEventListener(type, function (e) {
          if (e.lastEventId) { since = e.lastEventId; }
          var ev;
          try { ev = JSON.parse(e.data); } catch (err) { return; }
          if (type.indexOf("call.") === 0) { screenPop(ev); return; }
          onEvent(ev);
        });
      });
    }
    connect();
  }

  /* ---- screen pop: a call rings, the caller's open tickets show ----------------------- */

  var pop = $("#screenpop");
  var popCall = "";
  function popLabel(name, vars) {
    var text = (pop && pop.dataset["label" + name]) || "";
    Object.keys(vars || {}).forEach(function (k) { text = text.split("{" + k + "}").join(vars[k]); });
    return text;
  }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text) { n.textContent = text; }
    return n;
  }
  function closePop() {
    if (!pop) { return; }
    var hadFocus = pop.contains(document.activeElement);
    pop.hidden = true;
    pop.textContent = "";
    popCall = "";
    if (hadFocus) { $("#main").focus(); }
  }
  function listTickets(list, contactId, callId) {
    fetch("/api/v1/contacts/" + encodeURIComponent(contactId), {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    })
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; })
      .then(function (contact) {
        if (popCall !== callId) { return; }
        list.textContent = "";
        var open = ((contact && contact.ticket_summaries) || []).filter(function (t) { return t.status === "open"; });
        if (!open.length) { list.appendChild(el("li", "screenpop-none", popLabel("NoOpenTickets"))); return; }
        open.forEach(function (t) {
          var li = el("li");
          var a = el("a", "", t.number || t.id);
          a.href = "/console/tickets/" + encodeURIComponent(t.number || t.id);
          li.appendChild(a);
          list.appendChild(li);
        });
      });
  }
  function screenPop(ev) {
    if (!pop) { return; }
    if (ev.type === "call.hangup") {
      if (ev.call_id === popCall && !pop.contains(document.activeElement)) { closePop(); }
      return;
    }
    if (ev.type !== "call.ringing" && ev.type !== "call.answered") { return; }
    if (ev.type === "call.answered" && ev.agent && ev.agent !== me && ev.call_id !== popCall) { return; }
    popCall = ev.call_id || "";
    pop.textContent = "";
    var card = el("div", "screenpop-card");
    card.tabIndex = 0;
    card.dataset.callId = popCall;
    card.dataset.event = ev.type;
    var caller = ev.caller_masked || popLabel("Withheld");
    var title = el("p", "screenpop-title",
      popLabel(ev.type === "call.answered" ? "Answered" : "Incoming", { caller: caller }));
    title.id = "screenpop-title";
    card.setAttribute("aria-labelledby", "screenpop-title");
    card.appendChild(title);
    var meta = el("p", "screenpop-meta");
    if (ev.queue) { meta.appendChild(el("span", "", popLabel("Queue", { queue: ev.queue }))); }
    if (ev.agent && ev.agent === me) {
      meta.appendChild(el("strong", "screenpop-mine", popLabel("ForYou")));
      card.classList.add("is-mine");
    }
    if (meta.childNodes.length) { card.appendChild(meta); }
    if (ev.contact_id) {
      card.appendChild(el("p", "screenpop-label", popLabel("OpenTickets")));
      var list = el("ul", "screenpop-tickets");
      card.appendChild(list);
      listTickets(list, ev.contact_id, popCall);
    } else {
      card.appendChild(el("p", "screenpop-new", popLabel("NewCaller")));
    }
    var close = el("button", "screenpop-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", popLabel("Dismiss"));
    close.title = popLabel("Dismiss");
    close.addEventListener("click", closePop);
    card.appendChild(close);
    pop.appendChild(card);
    pop.hidden = false;
  }
  if (pop) {
    pop.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); closePop(); }
    });
  }

  /* ---- the queue page -------------------------------------------------------------- */

  if (page === "queue") {
    var refreshQueue = debounce(function () { swap("queue", "/console/queue"); }, 250);
    startEvents(function (ev) {
      if (ev.type === "ticket.viewing" || ev.type === "agent.presence" || ev.type.indexOf("alert.") === 0) { return; }
      refreshQueue();
    });
    var presence = $("#presence");
    if (presence) {
      presence.addEventListener("change", function () { presence.form.requestSubmit(); });
    }
  }

  /* ---- the supervisors' dashboard ------------------------------------------------- */

  /* The live numbers are re-fetched on events, at most once per LIVE_MS (a throttle, not a
     debounce: under steady load a debounce would never fire), and on a timer, because rates
     and waiting ages move without events. The charts follow the clock, or a window switch. */
  if (page === "dashboard") {
    var LIVE_MS = 2000, TICK_MS = 10000, CHARTS_MS = 60000;
    var lastLive = 0, liveTimer = null;
    var refreshLive = function () {
      liveTimer = null;
      lastLive = Date.now();
      swap("dashboard-live", "/console/dashboard/live");
    };
    var soonLive = function () {
      if (liveTimer) { return; }
      liveTimer = setTimeout(refreshLive, Math.max(0, lastLive + LIVE_MS - Date.now()));
    };
    var chartWindow = function () {
      var c = $("#dashboard-charts");
      return (c && c.dataset.window) || "hour";
    };
    var refreshCharts = function (w) {
      var open = $all("#dashboard-charts details[open]").map(function (d) { return d.id; });
      return swap("dashboard-charts", "/console/dashboard/charts?window=" + encodeURIComponent(w || chartWindow()))
        .then(function (fresh) {
          open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
          return fresh;
        });
    };
    startEvents(function (ev) {
      if (ev.type === "ticket.viewing") { return; }
      soonLive();
    });
    setInterval(function () { if (!document.hidden) { soonLive(); } }, TICK_MS);
    setInterval(function () { if (!document.hidden) { refreshCharts(); } }, CHARTS_MS);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { soonLive(); } });
    document.addEventListener("click", function (e) {
      var a = e.target.closest ? e.target.closest("#dashboard-charts a[data-window]") : null;
      if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) { return; }
      e.preventDefault();
      refreshCharts(a.dataset.window).then(function (fresh) {
        if (!fresh) { window.location.href = a.href; return; }
        history.replaceState(null, "", a.href);
        var again = document.getElementById(a.id);
        if (again) { again.focus(); }
      });
    });
  }

  /* ---- the ticket page ------------------------------------------------------------- */

  var timelineWrap = $("#timeline-wrap");
  function nearBottom() {
    return !timelineWrap || timelineWrap.scrollHeight - timelineWrap.scrollTop - timelineWrap.clientHeight < 80;
  }
  function toBottom() { if (timelineWrap) { timelineWrap.scrollTop = timelineWrap.scrollHeight; } }

  if (page === "ticket" && ticketId) {
    var base = "/console/tickets/" + encodeURIComponent(ticketRef);
    toBottom();

    /* Replies whose delivery state can still move are re-read until they settle (the
       provider's status callbacks do not reach the consoles as events of their own). */
    var pollDelay = 1000;
    var pollTimer = null;
    function schedulePoll() {
      clearTimeout(pollTimer);
      var tl = $("#timeline");
      if (!tl || !tl.dataset.pending) { pollDelay = 1000; return; }
      pollTimer = setTimeout(function () { refreshTimeline(false); }, pollDelay);
      pollDelay = Math.min(15000, Math.round(pollDelay * 1.4));
    }

    var refreshTimeline = function (fromEvent) {
      var stick = nearBottom();
      var before = $all("#timeline > li").map(function (li) { return li.id; });
      if (fromEvent) { pollDelay = 1000; }
      swap("timeline", base + "/timeline").then(function (fresh) {
        if (fresh) {
          $all("#timeline > li").forEach(function (li) {
            if (before.indexOf(li.id) < 0 && li.classList.contains("msg")) { li.classList.add("fresh"); }
          });
          if (stick) { toBottom(); }
        }
        schedulePoll();
      });
    };
    var refreshHeader = function () {
      swap("ticket-header", base + "/header").then(function (fresh) { if (fresh) { startCountdown(); } });
    };
    var onTicketEvent = debounce(function () { refreshTimeline(true); refreshHeader(); }, 150);

    /* Others viewing or typing: from the viewing endpoint's answers and from events. */
    var others = {};
    var othersBox = $("#others");
    function renderOthers() {
      if (!othersBox) { return; }
      var now = Date.now();
      var typing = [], viewing = [];
      Object.keys(others).forEach(function (name) {
        var o = others[name];
        if (now - o.at > 25000 || o.state === "left") { delete others[name]; return; }
        (o.state === "typing" ? typing : viewing).push(name);
      });
      othersBox.textContent = "";
      [["typing", typing, othersBox.dataset.i18nTyping], ["viewing", viewing, othersBox.dataset.i18nViewing]]
        .forEach(function (row) {
          if (!row[1].length) { return; }
          var span = el("span", row[0]);
          var around = (row[2] || "{names}").split("{names}");
          span.appendChild(document.createTextNode(around[0]));
          row[1].forEach(function (name, i) {  // each in a <bdi>: its direction stays its own
            if (i) { span.appendChild(document.createTextNode(", ")); }
            span.appendChild(el("bdi", "", name));
          });
          span.appendChild(document.createTextNode(around.slice(1).join("{names}")));
          othersBox.appendChild(span);
        });
    }
    var names = {};  // username -> display name, from the transfer form's list of agents
    $all("#agents option").forEach(function (o) { names[o.value] = o.textContent || o.value; });
    function noteOthers(map) {
      if (!map) { return; }
      var now = Date.now();
      Object.keys(map).forEach(function (user) { others[names[user] || user] = { state: map[user], at: now }; });
      renderOthers();
    }

    var typingSince = 0;
    function announce(state, keepalive) {
      return postJSON("/api/v1/tickets/" + encodeURIComponent(ticketId) + "/viewing", { state: state }, keepalive)
        .then(function (res) { if (res) { noteOthers(res.others); } });
    }
    announce("viewing");
    setInterval(function () {
      if (document.hidden) { return; }
      announce(Date.now() - typingSince < 8000 ? "typing" : "viewing");
      renderOthers();
    }, 10000);
    var lastTypingPost = 0;
    $all("[data-typing]").forEach(function (el) {
      el.addEventListener("input", function () {
        typingSince = Date.now();
        if (typingSince - lastTypingPost > 4000) { lastTypingPost = typingSince; announce("typing"); }
      });
    });
    window.addEventListener("pagehide", function () { announce("left", true); });

    startEvents(function (ev) {
      if (ev.ticket_id !== ticketId) { return; }
      if (ev.type === "ticket.viewing") {
        if (ev.agent && ev.agent !== me) {
          var map = {};
          map[ev.agent] = ev.state;
          noteOthers(map);
        }
        return;
      }
      onTicketEvent();
    });
    schedulePoll();

    /* Keep the claim while the agent is actually working (an untouched claim lapses). */
    if (body.dataset.heldByMe) {
      setInterval(function () {
        if (Date.now() - lastActivity < 5 * 60000) {
          postJSON("/api/v1/tickets/" + encodeURIComponent(ticketId) + "/lease", {});
        }
      }, 2 * 60000);
    }
  }

  /* ---- reply window countdown (WhatsApp 24 h, Instagram 24 h + 7 days) --------------------------------------------------- */

  var countdownTimer = null;
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function startCountdown() {
    clearInterval(countdownTimer);
    var header = $("#ticket-header");
    var badge = $("#window-state");
    if (!header || !badge) { return; }
    var left = parseInt(header.dataset.windowLeft || "0", 10);
    var deadline = Date.now() + left * 1000;
    var composer = $("#composer");
    var startState = header.dataset.windowState;
    function tick() {
      var s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      var state = s <= 0 ? "closed" : startState === "human" ? "human" : s < 7200 ? "closing" : "open";
      badge.className = "window window-" + state;
      $(".wlabel", badge).textContent = badge.dataset["label" + state.charAt(0).toUpperCase() + state.slice(1)];
      var leftEl = $(".wleft", badge);
      if (leftEl) {
        leftEl.textContent = s > 0
          ? badge.dataset.left.replace("{time}", pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s % 3600 / 60)) + ":" + pad(s % 60))
          : "";
      }
      var mode = composer ? composer.dataset.mode : "";
      var mismatch = state === "closed" ? mode === "text" : (mode === "template" || mode === "closed_window");
      if (composer && mode !== "closed_ticket" && mismatch) {
        $("#window-notice").hidden = false;   // the form on screen no longer fits the window
      }
      if (s <= 0 && startState === "closed") { clearInterval(countdownTimer); }
    }
    tick();
    countdownTimer = setInterval(tick, 1000);
  }
  startCountdown();

  /* ---- composer: drafts, canned responses, Ctrl+Enter, no double submits ------------- */

  var replyForm = $("#reply-form");
  var replyText = $("#reply-text");
  if (replyForm && replyText) {
    var key = replyForm.dataset.draftKey;
    var composer = $("#composer");
    try {
      if (composer && composer.dataset.sent) {
        sessionStorage.removeItem(key);
      } else if (!replyText.value && sessionStorage.getItem(key)) {
        replyText.value = sessionStorage.getItem(key);
      }
    } catch (err) { /* storage may be unavailable: drafts are a convenience */ }
    replyText.addEventListener("input", function () {
      try { sessionStorage.setItem(key, replyText.value); } catch (err) { /* ignore */ }
    });
  }
  var canned = $("#canned");
  if (canned && replyText) {
    canned.form.addEventListener("submit", function (e) {
      e.preventDefault();
      var opt = canned.options[canned.selectedIndex];
      if (!opt || !opt.value) { return; }
      var text = opt.getAttribute("data-text") || "";
      var start = replyText.selectionStart || 0, end = replyText.selectionEnd || 0;
      replyText.value = replyText.value.slice(0, start) + text + replyText.value.slice(end);
      replyText.dispatchEvent(new Event("input"));
      replyText.focus();
      replyText.setSelectionRange(start + text.length, start + text.length);
      canned.selectedIndex = 0;
    });
    canned.addEventListener("change", function () { canned.form.requestSubmit(); });
  }
  $all("textarea").forEach(function (ta) {
    ta.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && ta.form) {
        e.preventDefault();
        ta.form.requestSubmit();
      }
    });
  });
  $all("form[method=post], form[method=POST]").forEach(function (form) {
    form.addEventListener("submit", function () {
      if (form.dataset.submitting) { return; }
      form.dataset.submitting = "1";
      setTimeout(function () {
        $all("button[type=submit], button:not([type])", form).forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });

  $all(".flash-close").forEach(function (b) {
    b.addEventListener("click", function () { b.parentNode.remove(); });
  });

  /* ---- presence heartbeat: online/away expire unless refreshed ---------------------- */

  if (me && csrf) {
    setInterval(function () {
      var sel = $("#presence");
      var state = sel ? sel.value : "";
      if (state === "online" || state === "away") { postJSON("/api/v1/presence", { state: state }); }
    }, 60000);
  }

  /* ---- keyboard shortcuts ---------------------------------------------------------- */

  ["keydown", "pointerdown", "scroll"].forEach(function (type) {
    window.addEventListener(type, function () { lastActivity = Date.now(); }, { passive: true });
  });
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    var inField = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
    if (e.key === "Escape" && inField) { t.blur(); return; }
    if (inField || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var target = null;
    switch (e.key) {
      case "/": target = $("#search-q") || $("#sq"); break;
      case "r": target = $("#reply-text") || $(".tpl input:not([type=hidden])") || $(".tpl button"); break;
      case "c": target = $("#note-text"); break;
      case "n":
        var form = $("#claim-next-form");
        if (form) { e.preventDefault(); form.requestSubmit(); }
        return;
      case "q": e.preventDefault(); window.location.href = "/console"; return;
      default: return;
    }
    if (target) { e.preventDefault(); target.focus(); }
  });
})();
