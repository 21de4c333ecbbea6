// Shared by every view: read the embedded data, swap the static picture for the live view, report errors
// in place (never a blank cell), and decode the compressed arrays some views carry.
function start(root, build) {
  const live = root.querySelector(".me-live");
  try {
    const data = JSON.parse(root.querySelector(".me-data").textContent);
    const ready = Promise.resolve(build(live, data, root));
    ready.then(() => {
      live.hidden = false;
      root.querySelector(".me-static").hidden = true;
      root.dataset.ready = "1";
    }).catch((err) => fail(root, err));
  } catch (err) {
    fail(root, err);
  }
}

function fail(root, err) {
  const p = document.createElement("p");
  p.className = "me-error";
  p.textContent = "This view could not start (" + err + "); the picture above is its starting state.";
  root.appendChild(p);
  root.dataset.ready = "error";
  console.error(err);
}

// base64 -> zlib-compressed bytes -> Uint8Array, with the browser's own DecompressionStream.
async function inflate(b64) {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  if (typeof DecompressionStream === "undefined") {
    throw new Error("this browser lacks DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+)");
  }
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Blue at opacity a over white, as the explorer shades tokens; white text once the shade is dark.
function shade(node, a) {
  node.style.background = "rgba(33,113,181," + a.toFixed(3) + ")";
  node.style.color = a > 0.62 ? "#fff" : "";
}

// viridis at t in 0..1 (five stops, linear between them): the score colour of the head overview.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return "rgb(" + c.join(",") + ")";
}
