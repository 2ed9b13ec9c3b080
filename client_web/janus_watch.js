// vn3d retarget — watching a cluster's room from Janus.
// In cluster mode (docs/DEPLOYMENT.md) a room is a Janus VideoRoom: each member's avatar
// is published into it by the machine that renders it, and the page watches the others'
// feeds from Janus itself. This is a small client of Janus's WebSocket API (the
// "janus-protocol" subprotocol): one Janus session per room, one subscriber handle per
// watched feed; Janus makes the offer, the page answers.
"use strict";

window.JanusWatch = (() => {
  const KEEPALIVE_MS = 25000; // Janus ends a silent session after 60 s
  const REPLY_MS = 10000;

  class Link {
    constructor(url) {
      this.url = url;
      this.pending = new Map(); // transaction -> {resolve, reject, timer}
      this.session = null;
      this.ws = null;
      this.keepalive = null;
      this.ready = this.open();
    }

    open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url, "janus-protocol");
        this.ws = ws;
        ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
        ws.onerror = () => reject(new Error("cannot reach the room's media server"));
        ws.onclose = () => this.failAll(new Error("the room's media server closed"));
        ws.onopen = async () => {
          try {
            const reply = await this.request({ janus: "create" });
            this.session = reply.data.id;
            this.keepalive = setInterval(
              () => this.request({ janus: "keepalive" }).catch(() => {}),
              KEEPALIVE_MS,
            );
            resolve(this);
          } catch (err) {
            reject(err);
          }
        };
      });
    }

    onMessage(msg) {
      const waiter = this.pending.get(msg.transaction);
      if (!waiter || msg.janus === "ack") return; // a plugin's event follows its ack
      this.pending.delete(msg.transaction);
      clearTimeout(waiter.timer);
      if (msg.janus === "error") waiter.reject(new Error(msg.error.reason || "Janus error"));
      else waiter.resolve(msg);
    }

    failAll(err) {
      for (const w of this.pending.values()) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      this.pending.clear();
    }

    request(body) {
      const transaction = Math.random().toString(36).slice(2) + Date.now().toString(36);
      const msg = Object.assign({}, body, { transaction });
      if (this.session !== null) msg.session_id = this.session;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(transaction);
          reject(new Error("the room's media server did not answer"));
        }, REPLY_MS);
        this.pending.set(transaction, { resolve, reject, timer });
        this.ws.send(JSON.stringify(msg));
      });
    }

    async message(handle, body, jsep) {
      const msg = { janus: "message", handle_id: handle, body };
      if (jsep) msg.jsep = jsep;
      const reply = await this.request(msg);
      const data = (reply.plugindata && reply.plugindata.data) || {};
      if (data.error) throw new Error(data.error);
      return { data, jsep: reply.jsep || null };
    }

    close() {
      clearInterval(this.keepalive);
      try {
        if (this.session !== null) {
          this.ws.send(JSON.stringify({ janus: "destroy", session_id: this.session,
                                        transaction: "bye" }));
        }
        this.ws.close();
      } catch (err) {
        /* already closed */
      }
    }
  }

  // Watch `feed` of the room `room` ({url, room, pin}): `peer` is the page's
  // RTCPeerConnection (its ontrack set by the caller); resolves once answered.
  async function watch(link, room, feed, peer, waitIce) {
    await link.ready;
    const attached = await link.request({ janus: "attach", plugin: "janus.plugin.videoroom" });
    const handle = attached.data.id;
    const joined = await link.message(handle, {
      request: "join", ptype: "subscriber", room: room.room, pin: room.pin,
      streams: [{ feed }],
    });
    await peer.setRemoteDescription(joined.jsep);
    await peer.setLocalDescription(await peer.createAnswer());
    await waitIce(peer);
    await link.message(handle, { request: "start" },
                       { type: "answer", sdp: peer.localDescription.sdp });
    return handle;
  }

  function detach(link, handle) {
    if (handle) link.request({ janus: "detach", handle_id: handle }).catch(() => {});
  }

  return { Link, watch, detach };
})();
