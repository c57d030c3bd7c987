// The lab overview: one tile per rig, refreshed from /api/lab four times a second.
"use strict";
const PERIOD_MS = 250;
const tiles = new Map();

function fixed(value, digits) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "—";
}

function hours(seconds) {
  if (typeof seconds !== "number") return "—";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return `${h} h ${String(m).padStart(2, "0")} min`;
}

function queueText(q) {
  if (!q || !q.manager) return "—";
  if (q.manager === "unreachable") return "RE Manager not answering";
  const parts = [q.running ? `running ${q.running}` : q.manager];
  parts.push(`${q.queued} queued`);
  if (q.next && q.next.length) parts.push(`next ${q.next[0]}`);
  if (!q.worker) parts.push("worker closed");
  return parts.join(", ");
}

function tileFor(rig) {
  let tile = tiles.get(rig.name);
  if (!tile) {
    tile = document.getElementById("tile").content.firstElementChild.cloneNode(true);
    tile.dataset.rig = rig.name;
    tile.querySelector(".name").textContent = `${rig.name}  ${rig.prefix}`;
    const open = () => window.open(`/rigs/${rig.name}/latest`, "_blank");
    tile.addEventListener("click", open);
    tile.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    document.getElementById("tiles").appendChild(tile);
    tiles.set(rig.name, tile);
  }
  return tile;
}

function show(rig) {
  const tile = tileFor(rig);
  const state = rig.online ? (rig.state || "—") : "Offline";
  tile.className = "tile " + rig.level + (state === "Running" ? " running" : "");
  tile.dataset.level = rig.level;
  tile.querySelector(".state").textContent = state;
  tile.querySelector(".why").textContent = rig.why;
  const values = {
    voltage: fixed(rig.voltage, 4),
    current: fixed(typeof rig.current === "number" ? rig.current * 1e3 : null, 3),
    pressure: fixed(rig.pressure, 2),
    gap: fixed(rig.gap, 2),
    step: rig.steps ? `${rig.step} of ${rig.steps}` : "—",
    cycle: rig.steps ? String(rig.cycle) : "—",
    step_text: rig.step_text || "—",
    mode: `${rig.mode || "—"}` + (typeof rig.pressure_sp === "number" ? `, set ${fixed(rig.pressure_sp, 1)} MPa` : ""),
    capacity: `${fixed(rig.charge, 4)} / ${fixed(rig.discharge, 4)} mAh`,
    interlock: rig.interlock === "Tripped" ? `TRIPPED: ${rig.interlock_reason}` : (rig.interlock || "—"),
    alarms: rig.alarms && rig.alarms.length ? rig.alarms.join(", ") : "none",
    last_event: rig.last_event || "none",
    queue: queueText(rig.queue),
    lab_event: rig.lab_event || "—",
    time: hours(rig.time),
    message: rig.message || "",
  };
  for (const el of tile.querySelectorAll("[data-f]")) {
    const text = values[el.dataset.f];
    if (el.textContent !== text) el.textContent = text;
    el.title = text;
  }
}

async function refresh() {
  try {
    const response = await fetch("/api/lab", { cache: "no-store" });
    const lab = await response.json();
    lab.rigs.forEach(show);
    const faults = lab.rigs.filter((r) => r.level === "fault").length;
    const running = lab.rigs.filter((r) => r.state === "Running").length;
    document.getElementById("summary").textContent =
      `${lab.rigs.length} rigs, ${running} running, ${faults} in fault`;
    document.getElementById("clock").textContent = new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("summary").textContent = `overview server not answering (${err})`;
  } finally {
    setTimeout(refresh, PERIOD_MS);
  }
}
refresh();
