// amct-nb layer table: an anywidget front end (plain ES module, no build step, no imports).
// State lives in the model's traitlets: rows (Python -> here), filter, sort_by, sort_desc,
// selection, active (both ways), changes (here -> Python: edits of quant_enable/act_algo/
// channel_wise/nuq_steps, applied to every selected row when the edited row is selected), render_ms.

const ALGOS = ["mse", "minmax", "percentile", "entropy"];
const COLS = [
  ["sel", "", false], ["index", "#", true], ["name", "layer", true], ["op_type", "op", true],
  ["weight_shape", "weight shape", true], ["channels", "ch", true], ["quant_enable", "quantize", true],
  ["act_algo", "range algo", true], ["channel_wise", "weights", true], ["nuq_steps", "levels", true],
  ["hist", "input histogram", false],
  ["clipped", "clipped %", true], ["sqnr", "SQNR dB", true], ["cosine", "cosine", true], ["setting", "result", true],
];

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function spark(h) {
  if (!h || !h.length) return "";
  let d = `M0 1`;
  for (let i = 0; i < h.length; i++) d += `L${i} ${(1 - h[i]).toFixed(3)}L${i + 1} ${(1 - h[i]).toFixed(3)}`;
  d += `L${h.length} 1Z`;
  return `<svg class="amct-lt-spark" viewBox="0 0 ${h.length} 1" preserveAspectRatio="none"><path d="${d}"/></svg>`;
}

function num(v, digits) {
  return v === null || v === undefined || Number.isNaN(v) ? "" : Number(v).toFixed(digits);
}

// the same rule as LayerTable.visible_names() in Python: every word in the name or the op type
export function matches(row, filter) {
  const words = String(filter || "").toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const hay = (row.name + " " + row.op_type).toLowerCase();
  return words.every((w) => hay.includes(w));
}

function render({ model, el }) {
  el.classList.add("amct-lt");
  el.innerHTML = `
    <div class="amct-lt-bar">
      <input class="amct-lt-filter" type="search" placeholder="filter: words of the layer name or op type"/>
      <span class="amct-lt-count"></span>
    </div>
    <div class="amct-lt-wrap"><table class="amct-lt-table"><thead><tr></tr></thead><tbody></tbody></table></div>`;
  const filter = el.querySelector(".amct-lt-filter");
  const count = el.querySelector(".amct-lt-count");
  const headRow = el.querySelector("thead tr");
  const tbody = el.querySelector("tbody");
  let seq = 0;

  headRow.innerHTML = COLS.map(([k, label, sortable]) =>
    k === "sel" ? `<th class="amct-lt-c-sel"><input type="checkbox" class="amct-lt-all" title="select all shown"/></th>`
      : `<th data-key="${k}" class="${sortable ? "amct-lt-sortable" : ""}">${esc(label)}</th>`).join("");

  function visible() {
    const rows = model.get("rows") || [];
    const f = model.get("filter");
    const out = rows.filter((r) => matches(r, f));
    const key = model.get("sort_by") || "index";
    const desc = model.get("sort_desc") ? -1 : 1;
    out.sort((a, b) => {
      let x = a[key], y = b[key];
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      if (typeof x === "string" || typeof y === "string") return desc * String(x).localeCompare(String(y));
      return desc * ((x > y) - (x < y));
    });
    return out;
  }

  function cell(r, k, selected) {
    const dis = r.quantizable ? "" : " disabled";
    switch (k) {
      case "sel": return `<td class="amct-lt-c-sel"><input type="checkbox" data-act="sel"${selected ? " checked" : ""}/></td>`;
      case "name": return `<td class="amct-lt-name" data-act="active" title="${esc(r.reason || r.name)}">${esc(r.name)}</td>`;
      case "quant_enable": return `<td><input type="checkbox" data-act="quant_enable"${r.quant_enable ? " checked" : ""}${dis}/></td>`;
      case "act_algo": return `<td><select data-act="act_algo"${dis}>${ALGOS.map((a) => `<option${a === r.act_algo ? " selected" : ""}>${a}</option>`).join("")}</select></td>`;
      case "channel_wise": return `<td><select data-act="channel_wise"${dis}><option value="1"${r.channel_wise ? " selected" : ""}>per-channel</option><option value="0"${r.channel_wise ? "" : " selected"}>per-tensor</option></select></td>`;
      case "nuq_steps": return `<td><select data-act="nuq_steps"${r.nuq_ok ? dis : " disabled"}>${[[0, "uniform"], [32, "NUQ 32"], [16, "NUQ 16"]].map(([v, t]) => `<option value="${v}"${v === r.nuq_steps ? " selected" : ""}>${t}</option>`).join("")}</select></td>`;
      case "hist": return `<td>${spark(r.hist)}</td>`;
      case "clipped": return `<td class="amct-lt-num">${num(r.clipped, 3)}</td>`;
      case "sqnr": return `<td class="amct-lt-num">${num(r.sqnr, 1)}</td>`;
      case "cosine": return `<td class="amct-lt-num">${num(r.cosine, 4)}</td>`;
      default: return `<td>${esc(r[k])}</td>`;
    }
  }

  function draw() {
    const t0 = performance.now();
    const rows = visible();
    const sel = new Set(model.get("selection") || []);
    const active = model.get("active");
    const key = model.get("sort_by");
    const parts = [];
    for (const r of rows) {
      const cls = [r.quantizable ? "" : "amct-lt-off", r.name === active ? "amct-lt-active" : "",
        r.quant_enable ? "" : "amct-lt-skipped"].join(" ");
      parts.push(`<tr data-name="${esc(r.name)}" class="${cls}">${COLS.map(([k]) => cell(r, k, sel.has(r.name))).join("")}</tr>`);
    }
    tbody.innerHTML = parts.join("");
    for (const th of headRow.querySelectorAll("th[data-key]")) {
      th.classList.toggle("amct-lt-sorted", th.dataset.key === key);
      th.dataset.dir = th.dataset.key === key ? (model.get("sort_desc") ? "desc" : "asc") : "";
    }
    if (filter.value !== model.get("filter")) filter.value = model.get("filter");
    const total = (model.get("rows") || []).length;
    count.textContent = `${rows.length} of ${total} layers shown, ${sel.size} selected`;
    const ms = performance.now() - t0;
    el.dataset.renderMs = ms.toFixed(1);
    el.dataset.rows = String(rows.length);
  }

  function send(names, field, value) {
    seq += 1;
    model.set("changes", names.map((n) => ({ name: n, field, value, seq })));
    model.save_changes();
  }

  filter.addEventListener("input", () => { model.set("filter", filter.value); model.save_changes(); });
  headRow.addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-key]");
    if (!th || !th.classList.contains("amct-lt-sortable")) return;
    const k = th.dataset.key;
    if (model.get("sort_by") === k) model.set("sort_desc", !model.get("sort_desc"));
    else { model.set("sort_by", k); model.set("sort_desc", k === "clipped"); }
    model.save_changes();
  });
  headRow.addEventListener("change", (ev) => {
    if (!ev.target.classList.contains("amct-lt-all")) return;
    model.set("selection", ev.target.checked ? visible().map((r) => r.name) : []);
    model.save_changes();
  });
  tbody.addEventListener("click", (ev) => {
    const td = ev.target.closest("td[data-act='active']");
    if (!td) return;
    model.set("active", td.parentElement.dataset.name);
    model.save_changes();
  });
  tbody.addEventListener("change", (ev) => {
    const t = ev.target;
    const tr = t.closest("tr");
    if (!tr) return;
    const name = tr.dataset.name;
    const act = t.dataset.act;
    const sel = model.get("selection") || [];
    const targets = sel.includes(name) ? sel : [name];
    if (act === "sel") {
      const s = new Set(sel);
      if (t.checked) s.add(name); else s.delete(name);
      model.set("selection", [...s]);
      model.save_changes();
    } else if (act === "quant_enable") send(targets, "quant_enable", t.checked);
    else if (act === "act_algo") send(targets, "act_algo", t.value);
    else if (act === "channel_wise") send(targets, "channel_wise", t.value === "1");
    else if (act === "nuq_steps") send(targets, "nuq_steps", Number(t.value));
  });

  for (const k of ["rows", "filter", "sort_by", "sort_desc", "selection", "active"]) model.on(`change:${k}`, draw);
  draw();
  const ms = Number(el.dataset.renderMs);
  model.set("render_ms", ms);
  model.save_changes();
}

export default { render };
