// The devices page: ask for fresh values every few seconds and update the table in place.
"use strict";
(function () {
  const root = document.getElementById("devices");
  if (!root) return;
  const url = root.dataset.live;
  const every = Number(root.dataset.every) || 2000;

  function show(device) {
    const section = root.querySelector(`section[data-serial="${CSS.escape(device.serial)}"]`);
    if (!section) return;
    const set = (el, text) => { if (el && el.textContent !== text) el.textContent = text; };
    const status = section.querySelector('[data-field="status"]');
    set(status, device.status || "?");
    if (status) status.className = device.online ? "online" : "offline";
    set(section.querySelector('[data-field="battery"]'), String(device.battery ?? "?"));
    set(section.querySelector('[data-field="signal_dbm"]'), String(device.signal_dbm ?? "?"));
    for (const probe of device.probes) {
      const row = section.querySelector(`tr[data-channel="${probe.channel}"]`);
      if (!row) continue;
      const value = probe.value === null ? "unplugged" : `${probe.value.toFixed(1)} °${probe.unit}`;
      set(row.querySelector('[data-field="value"]'), value);
      set(row.querySelector('[data-field="time"]'), probe.time ? probe.time.slice(11, 19) : "");
    }
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401 || response.redirected) { window.location = "/login"; return; }
      if (response.ok) {
        const body = await response.json();
        body.devices.forEach(show);  // a device added since the page loaded shows on reload
      }
    } catch (err) { /* the bridge restarting: try again at the next tick */ }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();
