// The avatar-only view: /avatar.html?room=ID[&participant=HANDLE][&token=T]
//
// For OBS's Browser Source (then OBS's Virtual Camera into any meeting app): the page joins
// the room as a viewer (no camera, no microphone), watches one member's avatar and shows it
// full-frame with nothing else, the whole page filled with the colour the avatar is rendered
// on (the member picks it on the main page: chroma green keys out cleanly). `participant` is
// the member's handle from the main page's "avatar-only link": it stays the same when that
// page reconnects, so the view follows it; without one, the newest member with video is
// shown. Text appears only while no avatar plays (what it waits for, or why it cannot).
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  const roomId = params.get("room");
  const wanted = params.get("participant"); // a member's handle, or null: the newest one
  const video = document.getElementById("avatar");
  const statusEl = document.getElementById("status");

  const pub = { state: "connecting", room: null, watching: null, background: null, error: null };
  window.vn3dAvatar = pub;

  let ws = null;
  let retryTimer = null;
  let current = null; // {id, call, pc}

  function status(text) {
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function later(fn, ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(fn, ms);
  }

  function connect() {
    const q = new URLSearchParams();
    if (params.get("token")) q.set("token", params.get("token"));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/ws?${q}`);
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = () => {
      stopWatching();
      pub.state = "connecting";
      if (pub.error !== "unauthorized") {
        status("Connection lost — reconnecting…");
        later(connect, 2000);
      }
    };
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "welcome":
        send({ type: "join_room", room: roomId });
        break;
      case "room":
        onRoom(msg);
        break;
      case "subscribed":
        if (current && current.id === msg.participant) {
          current.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp })
            .catch((err) => console.error("subscribed", err));
        }
        break;
      case "error":
        onError(msg);
        break;
      default:
        break;
    }
  }

  function onError(msg) {
    pub.error = msg.code;
    if (msg.code === "unknown_room") {
      status("No such room: it has ended, or the link is not complete.");
      later(() => send({ type: "join_room", room: roomId }), 5000);
    } else if (msg.code === "room_full") {
      status("The room is full: this view takes a place in it too.");
      later(() => send({ type: "join_room", room: roomId }), 5000);
    } else if (msg.code === "unknown_participant") {
      stopWatching(); // gone before the answer: the next room message picks again
    } else if (msg.code === "unauthorized") {
      status("Not authorised: the link needs the server's token (…&token=…).");
    } else {
      status(`${msg.code}: ${msg.message || ""}`);
    }
  }

  // whom to show: the wanted handle's newest call, or the newest member with video
  function pick(msg) {
    const others = (msg.participants || []).filter((p) => p.id !== msg.you && p.video);
    const candidates = wanted ? others.filter((p) => p.handle === wanted) : others;
    candidates.sort((a, b) => b.call - a.call);
    return candidates[0] || null;
  }

  function onRoom(msg) {
    pub.room = msg;
    pub.error = null;
    if (!msg.room) return;
    const who = pick(msg);
    if (who) {
      pub.background = who.background;
      document.body.style.background = who.background;
    }
    if (!who) {
      stopWatching();
      status(wanted ? "Waiting for the avatar (its page is not in a call in this room)…"
        : "Waiting for someone in the room to start their camera…");
    } else if (!current || current.id !== who.id || current.call !== who.call) {
      watch(who);
    }
  }

  async function watch(who) {
    stopWatching();
    pub.state = "subscribing";
    status("Connecting to the avatar…");
    const pc = new RTCPeerConnection({ iceServers: [] });
    current = { id: who.id, call: who.call, pc };
    pub.watching = who.id;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" }); // not played: the view is video
    pc.ontrack = (ev) => {
      if (ev.track.kind !== "video") return;
      video.srcObject = new MediaStream([ev.track]);
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (current && current.pc === pc && pc.connectionState === "failed") {
        stopWatching();
        if (pub.room) onRoom(pub.room); // try again
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceComplete(pc);
      if (current && current.pc === pc) {
        send({ type: "subscribe", participant: who.id, sdp: pc.localDescription.sdp,
          sdpType: "offer" });
      }
    } catch (err) {
      console.error("subscribe", err);
      stopWatching();
    }
  }

  function iceComplete(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  function stopWatching() {
    if (current) {
      try {
        current.pc.close();
      } catch (err) {
        /* already closed */
      }
    }
    current = null;
    pub.watching = null;
    pub.state = "waiting";
    video.srcObject = null;
  }

  video.addEventListener("playing", () => {
    pub.state = "playing";
    status("");
  });

  if (!roomId) {
    pub.state = "error";
    status("This view needs a room: open the avatar-only link from the main page's room panel.");
  } else {
    connect();
  }
})();
