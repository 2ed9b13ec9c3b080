// vn3d retarget — the live page.
// One WebSocket to the server (JSON messages) carries the WebRTC offer/answer, the
// target / mode / slider choices and the server's stats. The camera goes to the server
// over WebRTC and the rendered avatar comes back on the same peer connection. In a room
// (?room=ID, or "Create a room") the microphone goes too, and each other member's avatar
// and voice come on a receive-only peer connection of their own.
"use strict";

(() => {
  const DEFAULT_EMOTIONS = ["happy", "sad", "afraid", "angry", "surprised", "disgusted"];
  const DEFAULT_MODES = [
    { id: "track", available: true },
    { id: "emotion", available: true },
    { id: "sliders", available: true },
  ];
  const MODE_LABELS = { track: "Track", emotion: "Emotion", sliders: "Sliders" };
  const PING_MS = 10000;
  const ICE_GATHER_TIMEOUT_MS = 3000;
  const SLIDER_SEND_MS = 100; // at most ~10 slider messages a second
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;
  const CALIBRATE_FRAMES = 15;
  const RANGE_FRAMES = 90; // about three seconds of the user's biggest expressions
  
  const $ = (id) => document.getElementById(id);
  const el = {
    local: $("local"),
    localPlaceholder: $("local-placeholder"),
    avatar: $("avatar"),
    avatarPlaceholder: $("avatar-placeholder"),
    start: $("start"),
    stop: $("stop"),
    calibrate: $("calibrate"),
    calibrateRange: $("calibrate-range"),
    targets: $("targets"),
    modes: $("modes"),
    modeHint: $("mode-hint"),
    sliders: $("sliders"),
    slidersGroup: $("sliders-group"),
    stats: $("stats"),
    stages: $("stages"),
    message: $("message"),
    conn: $("conn"),
    connText: $("conn-text"),
    avatarPhoto: $("avatar-photo"),
    avatarCamera: $("avatar-camera"),
    makeAvatar: $("make-avatar"),
    hairGroup: $("hair-group"),
    avatarPublic: $("avatar-public"),
    avatarStatus: $("avatar-status"),
    avatarLinks: $("avatar-links"),
    hairStyles: $("hair-styles"),
    hairColour: $("hair-colour"),
    hairSave: $("hair-save"),
    roomCall: $("room-call"),
    roomCreate: $("room-create"),
    roomLeave: $("room-leave"),
    roomMute: $("room-mute"),
    roomLink: $("room-link"),
    roomCopy: $("room-copy"),
    roomBackground: $("room-background"),
    roomObsLink: $("room-obs-link"),
    roomObsCopy: $("room-obs-copy"),
    roomStatus: $("room-status"),
    roomGrid: $("room-grid"),
  };

  // Public state for tests and the console.
  const pub = {
    state: "idle", // idle | connecting | live | error
    lastStats: null,
    lastError: null,
    lastCalibrate: null, // the server's reply to the last calibrate message
    statsCount: 0, // stats messages received since the page loaded
    welcome: null,
    socket: "closed", // closed | connecting | open
    room: null, // the last room message: {room, you, size, participants}
    remotes: {}, // participant id -> {state: subscribing | playing, frames}
  };
  window.vn3d = pub;

  // ---- internal state ---------------------------------------------------------------
  let ws = null;
  let wsReady = false; // welcome received on the current socket
  let reconnectTimer = null;
  let reconnectAttempt = 0;
  let noReconnect = false; // set after "unauthorized"
  let pingTimer = null;

  let pc = null;
  let camera = null; // MediaStream
  let wantCall = false; // the user pressed Start and not Stop
  let negotiating = false;
  let callSerial = 0; // invalidates stale async steps after Stop / reconnect
  let pcRetryTimer = null;

  let selectedTarget = null;
  let userChoseTarget = false; // re-sent to a new session after a reconnect
  let currentMode = "track";
  let userChoseMode = false;
  let pendingMode = null;
  let emotions = DEFAULT_EMOTIONS.slice();
  const sliderValues = {};
  let sliderTimer = null;
  let sliderLastSent = 0;
  let calibrateTimer = null;

  // a room: "create", a room id to join (from ?room=), or null; kept over reconnects
  let roomWanted = new URLSearchParams(location.search).get("room");
  let roomId = null; // the room the server says we are in
  let muted = false;
  let userChoseBackground = false; // re-sent to a new session after a reconnect
  let cameraAskedAudio = false; // the camera stream was opened with the microphone asked for
  const subs = {}; // participant id -> {pc, tile}

  // ---- messages -----------------------------------------------------------------------
  // Several sources can want to say something at once; the most important one is shown.
  const PRIORITY = { fatal: 5, camera: 4, connection: 3, notice: 2, face: 1 };
  const messages = {};
  const messageTimers = {};

  function setMessage(slot, text, { level = "warn", timeoutMs = 0 } = {}) {
    clearTimeout(messageTimers[slot]);
    if (!text) {
      delete messages[slot];
    } else {
      messages[slot] = { text, level };
      if (timeoutMs > 0) {
        messageTimers[slot] = setTimeout(() => setMessage(slot, null), timeoutMs);
      }
    }
    renderMessage();
  }

  function renderMessage() {
    let best = null;
    for (const slot of Object.keys(messages)) {
      if (!best || PRIORITY[slot] > PRIORITY[best]) best = slot;
    }
    if (!best) {
      el.message.hidden = true;
      el.message.textContent = "";
      el.message.dataset.slot = "";
      return;
    }
    el.message.hidden = false;
    el.message.textContent = messages[best].text;
    el.message.dataset.slot = best;
    el.message.className = "message " + messages[best].level;
  }

  // ---- state ----------------------------------------------------------------------------
  function setState(state) {
    pub.state = state;
    document.body.dataset.state = state;
    const inCall = wantCall;
    el.start.disabled = inCall;
    el.stop.disabled = !inCall;
    el.calibrate.disabled = !(state === "live" && wsReady);
    el.calibrateRange.disabled = el.calibrate.disabled;
    el.avatarPlaceholder.textContent =
      state === "connecting" ? "Connecting…" : state === "live" ? "" : "Press Start";
    el.avatarPlaceholder.hidden = state === "live";
    el.localPlaceholder.hidden = !!camera;
  }

  function setSocketState(s) {
    pub.socket = s;
    el.conn.dataset.state = s;
    el.connText.textContent =
      s === "open" ? "connected" : s === "connecting" ? "connecting…" : "offline";
  }

  // ---- WebSocket --------------------------------------------------------------------------
  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const token = new URLSearchParams(location.search).get("token");
    const q = new URLSearchParams({ user: userKey() });
    if (token) q.set("token", token);
    return `${scheme}//${location.host}/ws?${q}`;
  }

  // A random key this browser keeps: the server lists the avatars it uploaded to it only.
  // Without local storage the key lives as long as the page (never a shared fallback).
  let memoryKey = null;
  function userKey() {
    let key = null;
    try {
      key = localStorage.getItem("vn3d-user");
    } catch (e) {
      key = null;
    }
    if (!key) key = memoryKey;
    if (!key) {
      key = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) =>
        b.toString(16).padStart(2, "0")).join("");
      rememberKey(key);
    }
    return key;
  }

  function rememberKey(key) {
    memoryKey = key;
    try {
      localStorage.setItem("vn3d-user", key);
    } catch (e) {
      // no local storage: the key lasts as long as this page
    }
  }

  // ---- make my avatar: the photo goes over the socket in pieces, then the server builds --
  const UPLOAD_CHUNK = 32 * 1024; // bytes per message (base64 keeps it under 64 KiB)
  pub.avatar = null; // the last avatar made: {id, name, zip, glb}

  async function makeAvatar(file) {
    if (!wsReady) {
      el.avatarStatus.textContent = "Not connected to the server.";
      return;
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    el.avatarStatus.textContent = "Uploading…";
    el.avatarLinks.textContent = "";
    const name = file.name.replace(/\.[^.]*$/, "").slice(0, 48) || "my avatar";
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    send({ type: "avatar_begin", name, bytes: bytes.length, public: el.avatarPublic.checked });
    for (let i = 0, seq = 0; i < bytes.length; i += UPLOAD_CHUNK, seq++) {
      let bin = "";
      for (const b of bytes.subarray(i, i + UPLOAD_CHUNK)) bin += String.fromCharCode(b);
      if (!send({ type: "avatar_chunk", seq, data: btoa(bin) })) {
        el.avatarStatus.textContent = "Connection lost during the upload.";
        return;
      }
    }
    send({ type: "avatar_end", sha256 });
    el.avatarStatus.textContent = "Building your avatar (a few seconds)…";
  }

  function onAvatar(msg) {
    pub.avatar = msg;
    el.avatarStatus.textContent = `Avatar "${msg.name}" is ready.`;
    el.avatarLinks.textContent = "";
    for (const [label, href] of [["zip", msg.zip], ["GLB", msg.glb]]) {
      const a = document.createElement("a");
      a.href = href;
      a.download = `${msg.name}.${label.toLowerCase()}`;
      a.textContent = `download ${label}`;
      el.avatarLinks.append(a, " ");
    }
    if (Array.isArray(msg.targets)) buildTargets(msg.targets);
    chooseTarget(msg.id);
  }

  // the camera's picture now, as the camera sees it (the preview is only shown mirrored)
  async function avatarFromCamera() {
    const v = el.local;
    if (!camera || !v.videoWidth) {
      el.avatarStatus.textContent = "Start the camera first.";
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = v.videoWidth;
    canvas.height = v.videoHeight;
    canvas.getContext("2d").drawImage(v, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    if (!blob) {
      el.avatarStatus.textContent = "The camera's picture could not be taken.";
      return;
    }
    makeAvatar(new File([blob], "me from the camera.jpg", { type: "image/jpeg" }));
  }

  if (el.avatarCamera) el.avatarCamera.addEventListener("click", avatarFromCamera);

  if (el.avatarPhoto) {
    el.avatarPhoto.addEventListener("change", () => {
      const file = el.avatarPhoto.files && el.avatarPhoto.files[0];
      if (file) makeAvatar(file);
      el.avatarPhoto.value = "";
    });
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) {
      return;
    }
    setSocketState("connecting");
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (err) {
      console.error("WebSocket", err);
      scheduleReconnect();
      return;
    }
    ws = sock;
    wsReady = false;
    sock.onopen = () => {
      if (sock !== ws) return;
      setSocketState("open");
      clearInterval(pingTimer);
      pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
    };
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("not JSON from server", ev.data);
        return;
      }
      handleMessage(msg);
    };
    sock.onclose = () => {
      if (sock !== ws) return;
      onSocketClosed();
    };
    sock.onerror = () => {
      /* onclose follows */
    };
  }

  function onSocketClosed() {
    ws = null;
    wsReady = false;
    clearInterval(pingTimer);
    pingTimer = null;
    setSocketState("closed");
    setMessage("face", null);
    if (pendingMode) {
      currentMode = pendingMode; // unconfirmed, but it is what the user asked for
      pendingMode = null;
    }
    // The server's half of the call belonged to that socket's session: drop ours, keep
    // the camera, and negotiate again once a new socket is up (and join the room again).
    if (pc) closePeer();
    roomId = null;
    for (const id of Object.keys(subs)) unsubscribe(id);
    updateRoomUi();
    if (noReconnect) {
      if (wantCall) {
        wantCall = false;
        stopCamera();
      }
      setState("error");
      return;
    }
    if (wantCall) setState("connecting");
    else setState(pub.state === "error" ? "error" : "idle");
    setMessage("connection", "Connection lost — reconnecting…", { level: "warn" });
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (noReconnect || reconnectTimer) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** reconnectAttempt);
    reconnectAttempt += 1;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  function handleMessage(msg) {
    switch (msg.type) {
      case "welcome":
        onWelcome(msg);
        break;
      case "answer":
        onAnswer(msg);
        break;
      case "stats":
        onStats(msg);
        break;
      case "target":
        onTargetAck(msg);
        break;
      case "mode":
        onModeAck(msg);
        break;
      case "calibrate":
        onCalibrateAck(msg);
        break;
      case "error":
        onServerError(msg);
        break;
      case "avatar":
        onAvatar(msg);
        break;
      case "room":
        onRoom(msg);
        break;
      case "subscribed":
        onSubscribed(msg);
        break;
      case "reoffer":
        onReoffer(msg);
        break;
      case "avatar_begin":
      case "avatar_chunk":
      case "hangup":
      case "hair":
      case "background":
      case "pong":
        break;
      default:
        console.debug("unhandled message", msg);
    }
  }

  function onWelcome(msg) {
    pub.welcome = msg;
    if (typeof msg.user === "string" && msg.user !== userKey()) rememberKey(msg.user);
    wsReady = true;
    reconnectAttempt = 0;
    setMessage("connection", null);
    if (Array.isArray(msg.emotions) && msg.emotions.length) emotions = msg.emotions.slice();
    buildTargets(Array.isArray(msg.targets) ? msg.targets : []);
    if (Array.isArray(msg.hairstyles)) buildHairStyles(msg.hairstyles);
    resetHair(); // a new session: the targets' own hair
    // portrait uploads where the server can build avatars (a --model flame server needs
    // DECA's files); strand hair on the ICT head only (a flame server lists no styles)
    if (el.makeAvatar) el.makeAvatar.hidden = msg.avatars === false;
    if (el.hairGroup) {
      el.hairGroup.hidden = Array.isArray(msg.hairstyles) && !msg.hairstyles.length;
    }
    // a cluster's gateway offers no rooms yet (welcome.rooms === false)
    if (el.roomCall) el.roomCall.hidden = msg.rooms === false;
    buildModes(Array.isArray(msg.modes) && msg.modes.length ? msg.modes : DEFAULT_MODES);
    buildSliders();
    // A new socket is a new server session: re-apply what the user chose before.
    reapplyChoices();
    setState(pub.state);
    if (wantCall) startCall();
  }

  function reapplyChoices() {
    const w = pub.welcome || {};
    const targets = w.targets || [];
    if (userChoseTarget && selectedTarget && targets.some((t) => t.id === selectedTarget)) {
      if (selectedTarget !== w.target) send({ type: "target", id: selectedTarget });
    } else if (typeof w.target === "string") {
      selectedTarget = w.target; // the session's starting target, when the server says
      markTarget(selectedTarget);
    }
    if (userChoseMode) {
      const m = modeInfo(currentMode);
      if (m && m.available !== false) {
        if (currentMode !== (w.mode || "track")) {
          pendingMode = currentMode;
          send({ type: "mode", mode: currentMode });
        }
      } else {
        currentMode = w.mode || "track";
        markMode(currentMode);
      }
    } else if (typeof w.mode === "string") {
      currentMode = w.mode;
      markMode(currentMode);
    }
    if (userChoseBackground) {
      send({ type: "background", colour: el.roomBackground.value });
    }
    if (currentMode === "sliders") sendSlidersNow();
  }

  function onServerError(msg) {
    const code = msg.code || "internal";
    pub.lastError = { code, message: msg.message || "" };
    console.warn("server error", code, msg.message);
    if (ROOM_ERRORS.has(code)) {
      roomWanted = null;
      updateRoomUi();
      setMessage("notice", roomErrorText(code, msg.message), { level: "error", timeoutMs: 10000 });
      return;
    }
    if (code === "bad_photo" || code === "too_large" || code === "quota") {
      el.avatarStatus.textContent = `No avatar: ${msg.message || code}`;
      return;
    }
    if (code === "busy") {
      // the offer found no free call slot; the socket stays, Start offers again
      wantCall = false;
      callSerial += 1;
      clearTimeout(pcRetryTimer);
      closePeer();
      stopCamera();
      const n = busyCount(msg.message);
      const inUse = n === 1 ? "its one live session is in use"
        : n ? `all ${n} sessions in use` : "all sessions in use";
      const text = `The server is busy (${inUse}) — press Start to try again in a minute`;
      setMessage("fatal", text, { level: "error" });
      setState("error");
    } else if (code === "unauthorized") {
      noReconnect = true;
      setMessage("connection", null);
      setMessage(
        "fatal",
        "Not authorised — this page needs the link with its access token (…/?token=…)." +
          (msg.message ? ` Server: ${msg.message}` : ""),
        { level: "error" },
      );
      setState("error");
    } else if (code === "unavailable") {
      if (pendingMode) {
        pendingMode = null;
        markMode(currentMode);
      }
      setMessage("notice", msg.message || "That is not available on this server.", {
        timeoutMs: 6000,
      });
    } else if (code === "unknown_target") {
      setMessage("notice", msg.message || "Unknown target.", { timeoutMs: 6000 });
    } else if (code === "bad_sdp") {
      setMessage("notice", `The call could not be set up: ${msg.message || code}`, {
        level: "error",
        timeoutMs: 8000,
      });
      if (wantCall) retryCallSoon();
    } else {
      setMessage("notice", `Server: ${msg.message || code}`, { timeoutMs: 6000 });
    }
  }

  function busyCount(text) {
    if (pub.welcome && pub.welcome.maxSessions) return pub.welcome.maxSessions;
    const m = /(\d+)/.exec(text || "");
    return m ? Number(m[1]) : null;
  }

  // ---- targets ------------------------------------------------------------------------------
  let knownTargets = []; // the picker's list (avatars are marked `avatar: true`)
  function buildTargets(targets) {
    knownTargets = targets;
    el.targets.textContent = "";
    if (!targets.length) {
      const span = document.createElement("span");
      span.className = "hint";
      span.textContent = "No targets on this server.";
      el.targets.appendChild(span);
      return;
    }
    if (!selectedTarget || !targets.some((t) => t.id === selectedTarget)) {
      selectedTarget = targets[0].id;
    }
    for (const t of targets) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "target";
      b.dataset.id = t.id;
      b.setAttribute("role", "option");
      b.title = t.name || t.id;
      if (t.thumbnail) {
        const img = document.createElement("img");
        img.src = t.thumbnail;
        img.alt = "";
        img.loading = "lazy";
        img.onerror = () => img.replaceWith(initialBadge(t));
        b.appendChild(img);
      } else {
        b.appendChild(initialBadge(t));
      }
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = t.name || t.id;
      b.appendChild(name);
      b.addEventListener("click", () => chooseTarget(t.id));
      el.targets.appendChild(b);
    }
    markTarget(selectedTarget);
  }

  function initialBadge(t) {
    const d = document.createElement("span");
    d.className = "badge";
    d.textContent = (t.name || t.id || "?").trim().charAt(0).toUpperCase();
    return d;
  }

  function markTarget(id) {
    for (const b of el.targets.querySelectorAll(".target")) {
      const on = b.dataset.id === id;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-selected", on ? "true" : "false");
    }
  }

  function chooseTarget(id) {
    userChoseTarget = true;
    selectedTarget = id;
    markTarget(id);
    send({ type: "target", id });
    resetHair(); // a new target starts with its own hair
  }

  // ---- hair try-on: style and colour on the live head; an avatar can keep them --------
  // A picture of each style on the mean head (/hairstyles/NAME.png, made on first request);
  // "as built" (the target's own hair) first, "none" last, both as words.
  function buildHairStyles(styles) {
    el.hairStyles.textContent = "";
    for (const value of ["", ...styles]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "hairstyle";
      b.dataset.style = value;
      b.setAttribute("role", "option");
      const label = value ? value.replace(/_/g, " ") : "as built";
      b.title = label;
      if (value && value !== "none") {
        const img = document.createElement("img");
        const url = `/hairstyles/${encodeURIComponent(value)}.png`;
        let tries = 0; // a picture not made yet answers 503: ask again a little later
        img.onerror = () => {
          if (++tries > 60) img.remove();
          else setTimeout(() => { img.src = `${url}?try=${tries}`; }, 2000);
        };
        img.alt = "";
        img.loading = "lazy"; // before src: pictures scrolled out of the strip wait
        img.src = url;
        b.appendChild(img);
      }
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label;
      b.appendChild(name);
      b.addEventListener("click", () => {
        if (!value) {
          if (selectedTarget) chooseTarget(selectedTarget); // the target again: its own hair
          return;
        }
        markHairStyle(value);
        tryHair({ style: value });
      });
      el.hairStyles.appendChild(b);
    }
    markHairStyle("");
  }

  function markHairStyle(value) {
    for (const b of el.hairStyles.querySelectorAll(".hairstyle")) {
      b.setAttribute("aria-selected", b.dataset.style === value ? "true" : "false");
    }
  }

  function resetHair() {
    markHairStyle("");
    el.hairSave.disabled = true;
  }

  function tryHair(change) {
    if (send({ type: "hair", ...change })) {
      const target = knownTargets.find((t) => t.id === selectedTarget);
      el.hairSave.disabled = !(target && target.avatar); // only avatars can be saved
    }
  }

  el.hairColour.addEventListener("change", () => tryHair({ colour: el.hairColour.value }));
  el.hairSave.addEventListener("click", () => {
    if (send({ type: "hair_save" })) el.avatarStatus.textContent = "Saving the new hair…";
  });

  function onTargetAck(msg) {
    if (msg.ok === false) {
      setMessage("notice", msg.message || `Target "${msg.id}" could not be loaded.`, {
        timeoutMs: 6000,
      });
      return;
    }
    if (msg.id) {
      selectedTarget = msg.id;
      markTarget(msg.id);
    }
  }

  // ---- modes ----------------------------------------------------------------------------------
  function modeInfo(id) {
    const modes = (pub.welcome && pub.welcome.modes) || DEFAULT_MODES;
    return modes.find((m) => m.id === id);
  }

  function buildModes(modes) {
    el.modes.textContent = "";
    const reasons = [];
    for (const m of modes) {
      const label = document.createElement("label");
      label.className = "seg";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "mode";
      input.value = m.id;
      input.id = `mode-${m.id}`;
      const available = m.available !== false;
      input.disabled = !available;
      const span = document.createElement("span");
      span.textContent = MODE_LABELS[m.id] || m.id;
      label.appendChild(input);
      label.appendChild(span);
      if (!available) {
        const why = m.reason || "not available on this server";
        label.classList.add("disabled");
        label.title = why;
        reasons.push(`${MODE_LABELS[m.id] || m.id}: ${why}`);
      }
      input.addEventListener("change", () => {
        if (input.checked) chooseMode(m.id);
      });
      el.modes.appendChild(label);
    }
    el.modeHint.textContent = reasons.join(" · ");
    el.modeHint.hidden = reasons.length === 0;
    if (!modeInfo(currentMode) || modeInfo(currentMode).available === false) currentMode = "track";
    markMode(currentMode);
  }

  function markMode(id) {
    for (const input of el.modes.querySelectorAll("input[type=radio]")) {
      input.checked = input.value === id;
      input.parentElement.classList.toggle("selected", input.value === id);
    }
    el.slidersGroup.classList.toggle("inactive", id !== "sliders");
  }

  function chooseMode(id) {
    userChoseMode = true;
    pendingMode = id;
    markMode(id);
    if (!send({ type: "mode", mode: id })) {
      // Not connected: remember it; it is sent after the next welcome.
      pendingMode = null;
      currentMode = id;
    }
  }

  function onModeAck(msg) {
    if (msg.ok === false) {
      pendingMode = null;
      markMode(currentMode);
      setMessage("notice", msg.message || `Mode "${msg.mode}" is not available.`, {
        timeoutMs: 6000,
      });
      return;
    }
    pendingMode = null;
    currentMode = msg.mode || currentMode;
    markMode(currentMode);
    if (currentMode === "sliders") sendSlidersNow();
  }

  // ---- sliders -----------------------------------------------------------------------------------
  function buildSliders() {
    const existing = el.sliders.dataset.names || "";
    if (existing === emotions.join(",")) return;
    el.sliders.textContent = "";
    el.sliders.dataset.names = emotions.join(",");
    for (const name of emotions) {
      if (!(name in sliderValues)) sliderValues[name] = 0;
      const row = document.createElement("label");
      row.className = "slider";
      const title = document.createElement("span");
      title.className = "name";
      title.textContent = name;
      const input = document.createElement("input");
      input.type = "range";
      input.min = "0";
      input.max = "1";
      input.step = "0.01";
      input.value = String(sliderValues[name]);
      input.name = name;
      input.dataset.emotion = name;
      const out = document.createElement("output");
      out.textContent = Number(sliderValues[name]).toFixed(2);
      input.addEventListener("input", () => {
        sliderValues[name] = Number(input.value);
        out.textContent = sliderValues[name].toFixed(2);
        sendSlidersThrottled();
      });
      row.appendChild(title);
      row.appendChild(input);
      row.appendChild(out);
      el.sliders.appendChild(row);
    }
  }

  function sliderPayload() {
    const values = {};
    for (const name of emotions) values[name] = sliderValues[name] || 0;
    return { type: "sliders", values };
  }

  function sendSlidersNow() {
    clearTimeout(sliderTimer);
    sliderTimer = null;
    sliderLastSent = performance.now();
    send(sliderPayload());
  }

  function sendSlidersThrottled() {
    const wait = SLIDER_SEND_MS - (performance.now() - sliderLastSent);
    if (wait <= 0) {
      sendSlidersNow();
    } else if (!sliderTimer) {
      // trailing send so the last position always reaches the server
      sliderTimer = setTimeout(sendSlidersNow, wait);
    }
  }

  // ---- calibrate -----------------------------------------------------------------------------------
  function calibrate() {
    if (!send({ type: "calibrate", frames: CALIBRATE_FRAMES })) return;
    setMessage("notice", "Calibrating — look at the camera with a relaxed, neutral face…", {
      level: "info",
      timeoutMs: 4000,
    });
  }

  function calibrateRange() {
    if (!send({ type: "calibrate", kind: "range", frames: RANGE_FRAMES })) return;
    setMessage(
      "notice",
      "For three seconds: smile as wide as you can, open your mouth wide, raise your eyebrows…",
      { level: "info", timeoutMs: 6000 },
    );
  }

  function onCalibrateAck(msg) {
    pub.lastCalibrate = msg;
    if (msg.ok === false) {
      setMessage("notice", msg.message || "Calibration failed — keep your face in view.", {
        timeoutMs: 6000,
      });
    } else if (msg.kind !== "range") {
      setMessage("notice", "Neutral face calibrated.", { level: "info", timeoutMs: 2500 });
    }
  }

  // ---- stats ----------------------------------------------------------------------------------------
  function fmtMs(v) {
    return typeof v === "number" && isFinite(v) ? `${v.toFixed(1)} ms` : "–";
  }

  function onStats(msg) {
    pub.lastStats = msg;
    pub.statsCount += 1;
    const set = (key, text) => {
      const node = el.stats.querySelector(`[data-stat="${key}"]`);
      if (node) node.textContent = text;
    };
    set("fps", typeof msg.fps === "number" ? msg.fps.toFixed(1) : "–");
    renderStages(msg.stages && typeof msg.stages === "object" ? msg.stages : {});
    set("latency", fmtMs(msg.latencyMs));
    set("face", msg.face || "–");
    set("mode", msg.mode || "–");
    set(
      "emotion",
      msg.emotion && msg.emotion.label
        ? `${msg.emotion.label} ${Number(msg.emotion.intensity || 0).toFixed(2)}`
        : "–",
    );
    el.stats.dataset.face = msg.face || "";
    if (msg.face === "lost" || msg.face === "held" || msg.face === "easing") {
      setMessage("face", "No face in view", { level: "info" });
    } else {
      setMessage("face", null);
    }
    if (msg.mode && !pendingMode && msg.mode !== currentMode && modeInfo(msg.mode)) {
      currentMode = msg.mode;
      markMode(currentMode);
    }
  }

  // One row per stage (track, filter, model, render, ... whatever the server reports).
  function renderStages(stages) {
    const names = Object.keys(stages);
    if (el.stages.dataset.names !== names.join(",")) {
      el.stages.textContent = "";
      el.stages.dataset.names = names.join(",");
      for (const name of names) {
        const row = document.createElement("div");
        const k = document.createElement("span");
        k.className = "k";
        k.textContent = name;
        const v = document.createElement("span");
        v.className = "v";
        v.dataset.stage = name;
        row.appendChild(k);
        row.appendChild(document.createTextNode(" "));
        row.appendChild(v);
        el.stages.appendChild(row);
      }
    }
    for (const name of names) {
      el.stages.querySelector(`[data-stage="${CSS.escape(name)}"]`).textContent = fmtMs(stages[name]);
    }
  }

  function clearStats() {
    for (const node of el.stats.querySelectorAll("[data-stat]")) node.textContent = "–";
    el.stages.textContent = "";
    el.stages.dataset.names = "";
    el.stats.dataset.face = "";
    setMessage("face", null);
  }

  // ---- camera + WebRTC ------------------------------------------------------------------------------
  async function openCamera() {
    if (camera && camera.getVideoTracks().some((t) => t.readyState === "live")) return camera;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw Object.assign(new Error("This browser has no camera API (the page must be served over https or from localhost)."), { name: "NoMediaDevices" });
    }
    const video = { width: 640, height: 480 };
    cameraAskedAudio = !!roomWanted; // the microphone only for a room
    try {
      camera = await navigator.mediaDevices.getUserMedia({ video, audio: cameraAskedAudio });
    } catch (err) {
      if (!cameraAskedAudio) throw err;
      console.warn("no microphone; the room gets the avatar only", err);
      camera = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    }
    for (const t of camera.getAudioTracks()) t.enabled = !muted;
    el.local.srcObject = camera;
    el.local.play().catch(() => {});
    el.localPlaceholder.hidden = true;
    if (el.avatarCamera) el.avatarCamera.disabled = false;
    return camera;
  }

  function stopCamera() {
    if (camera) for (const t of camera.getTracks()) t.stop();
    camera = null;
    el.local.srcObject = null;
    el.localPlaceholder.hidden = false;
    if (el.avatarCamera) el.avatarCamera.disabled = true;
  }

  function cameraErrorText(err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      return "Camera access was denied — allow the camera in the browser's site settings and press Start";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
      return "No camera found — connect a camera and press Start";
    }
    if (name === "NotReadableError" || name === "TrackStartError") {
      return "The camera is in use by another application — close it and press Start";
    }
    return `The camera could not be opened (${(err && (err.message || err.name)) || err}) — press Start to try again`;
  }

  async function onStart() {
    if (wantCall) return;
    wantCall = true;
    noReconnect = false;
    pub.lastError = null;
    setMessage("fatal", null);
    setMessage("camera", null);
    setState("connecting");
    try {
      await openCamera();
    } catch (err) {
      console.error("getUserMedia", err);
      wantCall = false;
      pub.lastError = { code: "camera", message: String((err && err.name) || err) };
      setMessage("camera", cameraErrorText(err), { level: "error" });
      setState("error");
      return;
    }
    if (!wantCall) {
      stopCamera();
      return;
    }
    setState("connecting");
    if (wsReady) startCall();
    else connect(); // the call starts after the welcome
  }

  function onStop() {
    if (roomId || roomWanted) leaveRoom();
    if (pc) send({ type: "hangup" }); // frees the server's call slot at once
    wantCall = false;
    callSerial += 1;
    clearTimeout(pcRetryTimer);
    closePeer();
    stopCamera();
    clearStats();
    setMessage("camera", null);
    setState("idle");
  }

  function closePeer() {
    callSerial += 1;
    negotiating = false;
    if (pc) {
      const old = pc;
      pc = null;
      old.ontrack = null;
      old.onconnectionstatechange = null;
      old.oniceconnectionstatechange = null;
      try {
        old.close();
      } catch (err) {
        /* already closed */
      }
    }
    el.avatar.srcObject = null;
  }

  function retryCallSoon() {
    clearTimeout(pcRetryTimer);
    closePeer();
    if (!wantCall) return;
    setState("connecting");
    pcRetryTimer = setTimeout(() => {
      if (wantCall && wsReady && !pc) startCall();
    }, 2000);
  }

  function waitIceComplete(peer) {
    return new Promise((resolve) => {
      if (peer.iceGatheringState === "complete") {
        resolve();
        return;
      }
      const done = () => {
        peer.removeEventListener("icegatheringstatechange", check);
        clearTimeout(timer);
        resolve();
      };
      const check = () => {
        if (peer.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS);
      peer.addEventListener("icegatheringstatechange", check);
    });
  }

  async function startCall() {
    if (!wantCall || negotiating || pc) return;
    negotiating = true;
    const serial = ++callSerial;
    setState("connecting");
    try {
      const stream = await openCamera();
      if (serial !== callSerial) return;
      const peer = new RTCPeerConnection({ iceServers: [] });
      pc = peer;
      for (const track of stream.getTracks()) peer.addTrack(track, stream);
      peer.ontrack = (ev) => {
        if (peer !== pc) return;
        const remote = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
        el.avatar.srcObject = remote;
        el.avatar.play().catch(() => {});
      };
      peer.onconnectionstatechange = () => {
        if (peer !== pc) return;
        const s = peer.connectionState;
        if (s === "connected") {
          if (el.avatar.srcObject) markLive();
        } else if (s === "failed") {
          setMessage("notice", "The media connection failed — retrying…", { timeoutMs: 5000 });
          retryCallSoon();
        }
      };
      const offer = await peer.createOffer();
      await peer.setLocalDescription(offer);
      await waitIceComplete(peer);
      if (serial !== callSerial || peer !== pc) return;
      if (!send({ type: "offer", sdp: peer.localDescription.sdp, sdpType: "offer" })) {
        // socket went away meanwhile: onSocketClosed tore the peer down; the next
        // welcome starts over.
        return;
      }
    } catch (err) {
      console.error("startCall", err);
      setMessage("notice", `Could not start the call: ${err.message || err}`, {
        level: "error",
        timeoutMs: 8000,
      });
      if (serial === callSerial) retryCallSoon();
    } finally {
      if (serial === callSerial) negotiating = false;
    }
  }

  // cluster mode: the host of this call stopped; offer again at once (the gateway keeps
  // this session's target and mode, and the new offer lands on a healthy host)
  function onReoffer(msg) {
    pub.reoffers = (pub.reoffers || 0) + 1;
    if (!wantCall) return;
    setMessage("notice", "The avatar's host stopped — reconnecting…", { timeoutMs: 5000 });
    clearTimeout(pcRetryTimer);
    closePeer();
    startCall();
  }

  async function onAnswer(msg) {
    if (!pc || pc.signalingState !== "have-local-offer") {
      console.warn("answer without a pending offer");
      return;
    }
    const peer = pc;
    try {
      await peer.setRemoteDescription({ type: msg.sdpType || "answer", sdp: msg.sdp });
    } catch (err) {
      console.error("setRemoteDescription", err);
      if (peer === pc) {
        setMessage("notice", `Bad answer from the server: ${err.message || err}`, {
          level: "error",
          timeoutMs: 8000,
        });
        retryCallSoon();
      }
    }
  }

  function markLive() {
    if (!wantCall || !pc) return;
    if (pub.state !== "live") {
      setMessage("connection", null);
      setState("live");
    }
    enterWantedRoom();
  }

  // ---- rooms -----------------------------------------------------------------------------------
  const ROOM_ERRORS = new Set(["room_full", "unknown_room", "no_call", "not_in_room",
    "unknown_participant"]);

  function roomErrorText(code, message) {
    if (code === "room_full") return "That room is full — ask for a new link, or create a room";
    if (code === "unknown_room") return "No such room: it has ended, or the link is not complete";
    return `Room: ${message || code}`;
  }

  function inviteLink(id) {
    const q = new URLSearchParams({ room: id });
    const token = new URLSearchParams(location.search).get("token");
    if (token) q.set("token", token);
    return `${location.origin}${location.pathname}?${q}`;
  }

  // the avatar-only view of this member (client_web/avatar.js): by its handle, which
  // stays the same when this page reconnects
  function avatarOnlyLink(id) {
    const me = ((pub.room && pub.room.participants) || []).find((p) => p.id === pub.room.you);
    const q = new URLSearchParams({ room: id });
    if (me && me.handle) q.set("participant", me.handle);
    const token = new URLSearchParams(location.search).get("token");
    if (token) q.set("token", token);
    return `${location.origin}${location.pathname.replace(/[^/]*$/, "")}avatar.html?${q}`;
  }

  function chooseBackground() {
    userChoseBackground = true;
    send({ type: "background", colour: el.roomBackground.value });
    try {
      localStorage.setItem("vn3d-background", el.roomBackground.value); // kept over reloads,
    } catch (e) {
      // so that an OBS scene keyed on it stays keyed; without storage, for this page only
    }
  }

  function restoreBackground() {
    let saved = null;
    try {
      saved = localStorage.getItem("vn3d-background");
    } catch (e) {
      saved = null;
    }
    if (saved && [...el.roomBackground.options].some((o) => o.value === saved)) {
      el.roomBackground.value = saved;
      userChoseBackground = true;
    }
  }

  function enterWantedRoom() {
    if (!roomWanted || roomId || !wsReady || !pc) return;
    if (!cameraAskedAudio) {
      // the call has no microphone yet: make it again with one (not in a room yet)
      closePeer();
      stopCamera();
      startCall();
      return;
    }
    if (roomWanted === "create") send({ type: "create_room" });
    else send({ type: "join_room", room: roomWanted });
  }

  // cluster mode: the room is a Janus VideoRoom (msg.janus) and the others' avatars are
  // watched from Janus, through one Janus session for the room (janus_watch.js)
  let janusLink = null;
  let janusKey = null;
  function janusFor(room) {
    const key = room ? `${room.url}#${room.room}` : null;
    if (janusLink && janusKey !== key) {
      janusLink.close();
      janusLink = null;
    }
    if (room && !janusLink) janusLink = new window.JanusWatch.Link(room.url);
    janusKey = key;
    return janusLink;
  }

  function onRoom(msg) {
    pub.room = msg;
    roomId = msg.room || null;
    if (roomId) {
      roomWanted = roomId; // after a reconnect, join the same room again
      if (history.replaceState) history.replaceState(null, "", inviteLink(roomId));
    }
    const others = (msg.participants || []).filter((p) => p.id !== msg.you && p.video);
    const calls = new Map(others.map((p) => [p.id, p.call]));
    // gone, or their call was made again (the old avatar stream ended): watch anew
    for (const id of Object.keys(subs)) if (calls.get(id) !== subs[id].call) unsubscribe(id);
    for (const p of others) if (!subs[p.id]) subscribe(p.id, p.call);
    if (!msg.janus) janusFor(null);
    updateRoomUi();
  }

  async function subscribe(id, call) {
    const peer = new RTCPeerConnection({ iceServers: [] });
    const tile = document.createElement("figure");
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.id = `remote-${id}`;
    const caption = document.createElement("figcaption");
    caption.textContent = "Connecting…";
    tile.append(video, caption);
    el.roomGrid.append(tile);
    subs[id] = { pc: peer, tile, call };
    pub.remotes[id] = { state: "subscribing", frames: 0 };
    const stream = new MediaStream();
    peer.ontrack = (ev) => {
      stream.addTrack(ev.track);
      video.srcObject = stream;
      video.play().catch(() => {});
    };
    video.addEventListener("playing", () => {
      caption.textContent = "In the room";
      if (pub.remotes[id]) pub.remotes[id].state = "playing";
    });
    const janus = pub.room && pub.room.janus;
    if (janus) {
      // cluster mode: Janus offers the member's feed (`call` is its feed id)
      const link = janusFor(janus);
      try {
        const handle = await window.JanusWatch.watch(link, janus, call, peer, waitIceComplete);
        if (subs[id] && subs[id].pc === peer) Object.assign(subs[id], { link, handle });
        else window.JanusWatch.detach(link, handle);
      } catch (err) {
        console.error("janus subscribe", err);
        if (subs[id] && subs[id].pc === peer) unsubscribe(id);
      }
      return;
    }
    peer.addTransceiver("video", { direction: "recvonly" });
    peer.addTransceiver("audio", { direction: "recvonly" });
    try {
      await peer.setLocalDescription(await peer.createOffer());
      await waitIceComplete(peer);
      if (subs[id] && subs[id].pc === peer) {
        send({ type: "subscribe", participant: id, sdp: peer.localDescription.sdp, sdpType: "offer" });
      }
    } catch (err) {
      console.error("subscribe", err);
      unsubscribe(id);
    }
  }

  async function onSubscribed(msg) {
    const sub = subs[msg.participant];
    if (!sub || sub.pc.signalingState !== "have-local-offer") return;
    try {
      await sub.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } catch (err) {
      console.error("subscribed", err);
    }
  }

  function unsubscribe(id) {
    const sub = subs[id];
    if (!sub) return;
    delete subs[id];
    delete pub.remotes[id];
    if (sub.handle) window.JanusWatch.detach(sub.link, sub.handle);
    try {
      sub.pc.close();
    } catch (err) {
      /* already closed */
    }
    sub.tile.remove();
  }

  function leaveRoom() {
    if (roomId) send({ type: "leave_room" });
    roomWanted = null;
    roomId = null;
    pub.room = null;
    for (const id of Object.keys(subs)) unsubscribe(id);
    janusFor(null);
    const url = new URL(location.href);
    url.searchParams.delete("room");
    if (history.replaceState) history.replaceState(null, "", url);
    updateRoomUi();
  }

  function createRoom() {
    roomWanted = "create";
    updateRoomUi();
    if (!wantCall) onStart(); // the room starts with the call
    else enterWantedRoom();
  }

  function toggleMute() {
    muted = !muted;
    if (camera) for (const t of camera.getAudioTracks()) t.enabled = !muted;
    updateRoomUi();
  }

  function updateRoomUi() {
    const inRoom = !!roomId;
    el.roomCreate.hidden = inRoom;
    el.roomLeave.hidden = !inRoom;
    el.roomMute.hidden = !inRoom;
    el.roomMute.textContent = muted ? "Unmute" : "Mute";
    el.roomMute.setAttribute("aria-pressed", String(muted));
    el.roomLink.hidden = el.roomCopy.hidden = !inRoom;
    // the avatar-only page watches through the server's own rooms, not a cluster's Janus
    const janusRoom = !!(pub.room && pub.room.janus);
    el.roomObsLink.hidden = el.roomObsCopy.hidden = !inRoom || janusRoom;
    el.roomGrid.hidden = !inRoom;
    if (inRoom) {
      el.roomLink.value = inviteLink(roomId);
      el.roomObsLink.value = avatarOnlyLink(roomId);
      const all = (pub.room && pub.room.participants) || [];
      const n = Math.max(1, all.filter((p) => p.video || p.id === pub.room.you).length);
      const watching = all.length - n > 0 ? ` (+${all.length - n} watching)` : "";
      el.roomStatus.textContent =
        (n > 1 ? `${n} in the room` : "Only you so far — send the link") + watching;
    } else {
      el.roomStatus.textContent = roomWanted ? "Joining when the call starts…" : "";
    }
  }

  el.avatar.addEventListener("playing", markLive);
  el.avatar.addEventListener("loadeddata", () => {
    if (pc && pc.connectionState === "connected") markLive();
  });

  // ---- wiring --------------------------------------------------------------------------------------
  el.start.addEventListener("click", onStart);
  el.stop.addEventListener("click", onStop);
  el.calibrate.addEventListener("click", calibrate);
  el.calibrateRange.addEventListener("click", calibrateRange);
  el.roomCreate.addEventListener("click", createRoom);
  el.roomLeave.addEventListener("click", leaveRoom);
  el.roomMute.addEventListener("click", toggleMute);
  for (const [button, input] of [[el.roomCopy, el.roomLink], [el.roomObsCopy, el.roomObsLink]]) {
    button.addEventListener("click", () => {
      input.select();
      if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => {});
    });
  }
  el.roomBackground.addEventListener("change", chooseBackground);

  restoreBackground();
  buildModes(DEFAULT_MODES);
  buildSliders();
  setState("idle");
  updateRoomUi();
  connect();
})();
