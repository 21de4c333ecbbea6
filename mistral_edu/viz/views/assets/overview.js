// The head overview: one square per (layer, head), coloured by the chosen score; a click opens that head in
// the explorer drawn underneath (buildExplorer, from explorer.js).
async function buildOverview(live, data, root) {
  const top = el("div");
  const below = el("div");
  live.append(top, below);
  await buildExplorer(below, data, root);
  const H = data.n_heads, names = Object.keys(data.scores);
  const pick = el("select", "me-score");
  names.forEach((n) => pick.append(Object.assign(el("option", "", n), { value: n })));
  pick.value = data.score;
  const legend = el("span", "me-legend");
  const controls = el("div", "me-row");
  controls.append(el("span", "", "colour by"), pick, legend);
  const grid = el("table", "me-grid");
  const head = el("tr");
  head.append(el("th", "", "layer \\ head"));
  for (let h = 0; h < H; h++) head.append(el("th", "", h % data.n_rep ? "" : String(h)));
  grid.append(head);
  const cells = data.layers.map((layer, li) => {
    const tr = el("tr");
    tr.append(el("th", "", String(layer)));
    const row = [];
    for (let h = 0; h < H; h++) {
      const td = el("td", "me-cell");
      td.dataset.layer = layer; td.dataset.head = h;
      if (h % data.n_rep === 0) td.style.borderLeft = "2px solid #fff";
      td.onclick = () => { root.meView.set(li, h, root.meView.state.query); mark(); };
      tr.append(td);
      row.push(td);
    }
    grid.append(tr);
    return row;
  });
  top.append(controls, grid, el("p", "me-note", "Click a head to open it in the explorer below."));

  function colour() {
    const table = data.scores[pick.value];
    const flat = table.flat(), lo = Math.min(...flat), hi = Math.max(...flat);
    let best = [-Infinity, 0, 0];
    cells.forEach((row, li) => row.forEach((td, h) => {
      const v = table[li][h];
      td.style.background = viridis(hi > lo ? (v - lo) / (hi - lo) : 0);
      td.title = "layer " + data.layers[li] + " head " + h + ": " + pick.value + " " + v.toFixed(3);
      if (v > best[0]) best = [v, li, h];
    }));
    legend.textContent = pick.value + " from " + lo.toFixed(2) + " (dark) to " + hi.toFixed(2) +
      " (yellow); highest: layer " + data.layers[best[1]] + " head " + best[2] + " " + best[0].toFixed(2);
    root.dataset.score = pick.value;
  }
  function mark() {
    const s = root.meView.state;
    cells.forEach((row, li) => row.forEach((td, h) => td.classList.toggle("me-on", li === s.layer && h === s.head)));
  }
  pick.onchange = colour;
  colour();
  mark();
}
