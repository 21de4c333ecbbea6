// The attention explorer: layer slider, head buttons grouped by KV head, the text shaded by where the query
// token looks (hover a token to make it the query, click to pin it) and the head's heatmap.
// root.meView = {set(layerIndex, head, query), state} lets the head overview (and tests) drive it.
async function buildExplorer(live, data, root) {
  const bytes = await inflate(data.patterns);
  const T = data.T, H = data.n_heads, tri = (T * (T + 1)) / 2, labels = data.labels;
  if (bytes.length !== data.layers.length * H * tri) throw new Error("the embedded patterns are truncated");
  const state = { layer: data.layer, head: data.head, query: data.query, pinned: false };
  const weight = (q, k) => bytes[(state.layer * H + state.head) * tri + (q * (q + 1)) / 2 + k] / data.levels;

  const header = el("div", "me-header");
  const layerRow = el("div", "me-row");
  const slider = el("input");
  Object.assign(slider, { type: "range", min: 0, max: data.layers.length - 1, step: 1, value: state.layer });
  slider.className = "me-layer";
  const layerOut = el("span", "me-layer-value");
  layerRow.append(el("span", "", "layer"), slider, layerOut);
  const headRow = el("div", "me-row");
  headRow.append(el("span", "", "head"));
  const buttons = [];
  for (let g = 0; g < H / data.n_rep; g++) {
    const group = el("div", "me-group");
    group.append(el("span", "", "KV " + g));
    for (let h = g * data.n_rep; h < (g + 1) * data.n_rep; h++) {
      const b = el("button", "me-head", String(h));
      b.dataset.head = h;
      b.onclick = () => set(state.layer, h, state.query);
      buttons.push(b);
      group.append(b);
    }
    headRow.append(group);
  }
  const text = el("div", "me-text");
  const spans = labels.map((label, i) => {
    const s = el("span", "me-tok", label);
    s.dataset.pos = i;
    s.onmouseenter = () => { if (!state.pinned) set(state.layer, state.head, i); };
    s.onclick = () => { state.pinned = !(state.pinned && state.query === i); set(state.layer, state.head, i); };
    text.append(s);
    return s;
  });
  const cell = Math.max(1, Math.min(24, Math.floor(512 / T)));
  const margin = cell >= 8 ? 80 : 0;
  const canvas = el("canvas", "me-heatmap");
  canvas.width = canvas.height = margin + cell * T;
  const detail = el("div", "me-detail", "hover the heatmap: query row, key column");
  const pixels = document.createElement("canvas");
  pixels.width = pixels.height = T;
  const image = pixels.getContext("2d").createImageData(T, T);
  canvas.onmousemove = (e) => {
    const r = canvas.getBoundingClientRect();
    const k = Math.floor((e.clientX - r.left - margin) / cell), q = Math.floor((e.clientY - r.top - margin) / cell);
    if (q < 0 || k < 0 || q >= T || k >= T) return;
    detail.textContent = "query " + q + " “" + labels[q] + "” → key " + k + " “" + labels[k] + "”: " +
      (k <= q ? weight(q, k).toFixed(3) : "masked (a later token)");
  };
  canvas.onclick = (e) => {
    const q = Math.floor((e.clientY - canvas.getBoundingClientRect().top - margin) / cell);
    if (q >= 0 && q < T) { state.pinned = true; set(state.layer, state.head, q); }
  };
  live.append(header, layerRow, headRow, text, canvas, detail);

  function drawHeatmap() {
    const px = image.data;
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const o = 4 * (q * T + k);
        if (k > q) { px[o] = px[o + 1] = px[o + 2] = 243; px[o + 3] = 255; continue; }
        const w = weight(q, k);
        px[o] = 255 - w * (255 - 8); px[o + 1] = 255 - w * (255 - 48); px[o + 2] = 255 - w * (255 - 107); px[o + 3] = 255;
      }
    }
    pixels.getContext("2d").putImageData(image, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(pixels, margin, margin, cell * T, cell * T);
    ctx.strokeStyle = "#d62728";
    ctx.strokeRect(margin, margin + state.query * cell, cell * T, cell);
    if (!margin) return;
    ctx.fillStyle = "#222";
    ctx.font = Math.min(11, cell - 1) + "px monospace";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i < T; i++) ctx.fillText(labels[i], margin - 3, margin + (i + 0.5) * cell, margin - 4);
    for (let i = 0; i < T; i++) {
      ctx.save();
      ctx.translate(margin + (i + 0.5) * cell, margin - 3);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(labels[i], 0, 0, margin - 4);
      ctx.restore();
    }
  }

  function set(layer, head, query) {
    const start = performance.now();
    state.layer = layer; state.head = head; state.query = query;
    const row = [];
    for (let k = 0; k < T; k++) row.push(k <= query ? weight(query, k) : 0);
    const top = Math.max(...row, 1e-6);
    spans.forEach((s, k) => {
      shade(s, row[k] / top);
      s.title = k + ": " + row[k].toFixed(3);
      s.classList.toggle("me-query", k === query);
      s.classList.toggle("me-future", k > query);
    });
    const best = row.map((w, k) => [w, k]).sort((a, b) => b[0] - a[0]).slice(0, 3)
      .map(([w, k]) => labels[k] + " " + w.toFixed(2)).join(", ");
    const shownLayer = data.layers[layer];
    header.textContent = "layer " + shownLayer + " · head " + head + " (KV head " + Math.floor(head / data.n_rep) +
      ") · query " + query + " “" + labels[query] + "” · strongest: " + best +
      (state.pinned ? " · pinned (click it again to unpin)" : "");
    root.dataset.layer = shownLayer; root.dataset.head = head; root.dataset.query = query;
    slider.value = layer;
    layerOut.textContent = shownLayer + (data.levels < 255 ? " (weights rounded to 1/" + data.levels + ")" : "");
    buttons.forEach((b, h) => b.classList.toggle("me-on", h === head));
    drawHeatmap();
    root.dataset.redrawMs = (performance.now() - start).toFixed(2);
  }
  slider.oninput = () => set(Number(slider.value), state.head, state.query);
  root.meView = { set, state };
  set(state.layer, state.head, state.query);
}
