// The logit-lens table: a row per layer, a column per position, each cell the top token shaded by its
// probability; hovering a cell lists its full top-k underneath.
function buildLens(live, data, root) {
  const table = el("table", "me-lens");
  const head = el("tr");
  head.append(el("th", "", "layer \\ input"));
  data.labels.forEach((label, c) => { const th = el("th", "", label); th.title = "position " + data.positions[c]; head.append(th); });
  table.append(head);
  const detail = el("div", "me-detail", "hover a cell: its top " + data.top[0][0].length + " tokens");
  data.rows.forEach((name, r) => {
    const tr = el("tr");
    tr.append(el("th", "", name));
    data.top[r].forEach((cell, c) => {
      const td = el("td", "me-cell", cell[0][0] + " " + cell[0][1].toFixed(2));
      td.dataset.row = r; td.dataset.pos = c;
      shade(td, cell[0][1]);
      td.onmouseenter = () => {
        detail.textContent = name + ", position " + data.positions[c] + " “" + data.labels[c] + "”: " +
          cell.map(([piece, p]) => piece + " " + p.toFixed(3)).join(" · ");
        root.dataset.cell = r + "," + c;
      };
      tr.append(td);
    });
    table.append(tr);
  });
  const scroll = el("div");
  scroll.style.overflowX = "auto";
  scroll.append(table);
  live.append(scroll, detail);
}
