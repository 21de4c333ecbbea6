// The will-it-fit calculator: format x context x batch -> bytes, from the numbers Python sent (what
// memory.estimate adds up, evaluated the same way, to the byte), with the breakdown, each machine's verdict
// and the Python call that gives the same answer.
// root.meView = {estimate(format, context, batch), set(format, context, batch)} lets tests drive it.

// What each activation coefficient multiplies (memory.ActivationTerm.at): `fresh` is the tokens one pass
// computes, the whole prompt in one pass or a chunk on generate's fast path.
const MONOMIALS = {
  per_token: (context, batch, fresh) => batch * fresh,
  per_sequence: (context, batch, fresh) => batch,
  per_position: (context, batch, fresh) => context,
  per_score: (context, batch, fresh) => batch * fresh * context,
  per_mask_cell: (context, batch, fresh) => fresh * context,
  per_prompt_token: (context, batch, fresh) => batch * context,
  per_cached_cell: (context, batch, fresh) => (context > fresh ? fresh * context : 0),
};

// memory.prefill_path: generate's fast path for one sequence (this view's attention is always fused), unless a
// sliding window shorter than the context sends it to one pass.
function prefillPath(data, context, batch) {
  const shortWindow = data.sliding_window !== null && data.sliding_window < context;
  return batch === 1 && data.attention === "sdpa" && !shortWindow ? "fast" : "plain";
}

const thousands = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
const sum = (pairs) => pairs.reduce((total, [, bytes]) => total + bytes, 0);

// memory.estimate(cfg, weights=name, context=context, batch=batch), from data: its parts, the activation
// peak's stage and parts, and the rows of its table (Estimate.rows), label for label.
function fitEstimate(data, name, context, batch) {
  const fmt = data.formats.find((f) => f.name === name);
  if (!fmt) throw new Error("unknown weight format " + JSON.stringify(name));
  if (!Number.isInteger(context) || context < 1 || context > data.max_context) {
    throw new Error("context must be an integer in 1.." + data.max_context + " (the model's context), got " + context);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new Error("batch must be a positive integer, got " + batch);
  const path = prefillPath(data, context, batch);
  const fresh = path === "fast" ? Math.min(context, data.chunk) : context;   // memory.pass_tokens
  const monomials = data.terms.map((t) => {
    if (!MONOMIALS[t]) throw new Error("unknown activation term " + t);
    return MONOMIALS[t](context, batch, fresh);
  });
  const evaluate = (parts) => parts.map(([part, coefficients]) =>
    [part, coefficients.reduce((total, c, i) => total + c * monomials[i], 0)]);
  const model = data.activations[fmt.compute][path];
  let stage = null, stageParts = null;
  for (const [name, parts] of model.stages) {         // the first largest stage, as Python's max() picks
    const bytes = evaluate(parts);
    if (stage === null || sum(bytes) > sum(stageParts)) { stage = name; stageParts = bytes; }
  }
  const activationParts = [...evaluate(model.resident), ...stageParts];
  const slots = data.sliding_window ? Math.min(context, data.sliding_window) : context;
  const [kvPerToken, kvPerTokenNoGqa] = data.kv_per_token[fmt.compute];
  const parts = { "weights": sum(fmt.weights), "KV cache": batch * slots * kvPerToken,
                  "activations": sum(activationParts) };
  const total = parts["weights"] + parts["KV cache"] + parts["activations"];
  const withOverhead = total + data.overhead;
  if (!Number.isSafeInteger(withOverhead)) {
    throw new Error("batch x context is too large to count exactly here: ask memory.estimate in Python");
  }
  const rows = [["weights (" + fmt.description + ")", parts["weights"]],
    ...fmt.weights.filter(([, bytes]) => bytes).map(([part, bytes]) => ["  " + part, bytes]),
    ["KV cache (" + thousands(context) + " tokens x " + batch + ", " + fmt.compute + ")", parts["KV cache"]],
    ["  without GQA it would be", batch * slots * kvPerTokenNoGqa],
    ["activations (peak at " + stage + ", " + data.attention + ", " +
     (path === "fast" ? "generate's fast path, " + thousands(data.chunk) + "-token chunks" : "one pass") + ")",
     parts["activations"]],
    ...activationParts.map(([part, bytes]) => ["  " + part, bytes]),
    ["total (allocated by PyTorch)", total],
    ["runtime overhead, apart (" + data.overhead_note + ")", data.overhead],
    ["total with overhead", withOverhead]];
  const verdicts = data.machines.map((m) => ({ name: m.name, available: m.available, fits: total <= m.available }));
  return { format: fmt.name, compute: fmt.compute, context, batch, parts, overhead: data.overhead, total,
           total_with_overhead: withOverhead, stage, path, rows, verdicts };
}

const GB = 1e9, GIB = 2 ** 30;
const gb = (bytes) => (bytes / GB).toFixed(2) + " GB";

function buildWillItFit(live, data, root) {
  const state = { format: data.start.format, context: data.start.context, batch: data.start.batch };

  const format = el("select", "me-format");
  for (const [label, test] of [["float", (n) => /^(fp|bf)/.test(n)], ["quantised", (n) => !/^(fp|bf|gguf-)/.test(n)],
                               ["llama.cpp GGUF", (n) => n.startsWith("gguf-")]]) {
    const group = el("optgroup");
    group.label = label;
    data.formats.filter((f) => test(f.name)).forEach((f) => {
      const option = el("option", "", f.name + " · " + f.description);
      option.value = f.name;
      group.append(option);
    });
    format.append(group);
  }
  const context = el("input", "me-context");
  Object.assign(context, { type: "number", min: 1, max: data.max_context, step: 1 });
  const presets = el("span");
  for (let c = 1024; c <= data.max_context; c *= 2) {
    const b = el("button", "me-preset", c / 1024 + "k");
    b.onclick = () => set(state.format, c, state.batch);
    presets.append(b);
  }
  const batch = el("input", "me-batch");
  Object.assign(batch, { type: "number", min: 1, step: 1 });
  const own = el("input", "me-own");
  Object.assign(own, { type: "number", min: 0, step: 0.5, placeholder: "GB" });
  const controls = el("div", "me-row");
  controls.append(el("span", "", "format"), format, el("span", "", "context"), context, presets,
                  el("span", "", "batch"), batch, el("span", "", "your device, GB free"), own);

  const answer = el("div", "me-answer");
  const problem = el("div", "me-error");
  const bar = el("div", "me-bar");
  const legend = el("div", "me-legend");
  const machines = el("table", "me-machines");
  const code = el("div", "me-code");
  const caveat = el("div", "me-caveat");
  const rows = el("table", "me-rows");
  live.append(el("div", "me-header", data.model), controls, problem, answer, bar, legend, machines, code, caveat, rows);

  [format, context, batch, own].forEach((input) => {
    input.oninput = () => set(format.value, Number(context.value), Number(batch.value));
  });

  function machineRow(name, available, fitsThere, source) {
    const tr = el("tr");
    tr.dataset.fits = fitsThere ? "1" : "0";
    tr.title = source;
    const margin = Math.abs(available - current.total);
    tr.append(el("td", "", name), el("td", "", gb(available) + " available"),
              el("td", fitsThere ? "me-fits" : "me-short",
                 fitsThere ? "fits, " + gb(margin) + " to spare" : "does not fit, " + gb(margin) + " short"),
              el("td", "me-label", "predicted"));
    return tr;
  }

  let current = null;
  function set(name, ctx, b) {
    let e;
    try {
      e = fitEstimate(data, name, ctx, b);
    } catch (err) {
      problem.textContent = String(err.message) + ". The answer below is for the last valid choice.";
      root.dataset.problem = "1";
      return;
    }
    problem.textContent = "";
    delete root.dataset.problem;
    current = e;
    Object.assign(state, { format: name, context: ctx, batch: b });
    format.value = name;
    if (Number(context.value) !== ctx) context.value = ctx;
    if (Number(batch.value) !== b) batch.value = b;
    answer.textContent = name + ", context " + thousands(ctx) + ", batch " + b + ": " + gb(e.total_with_overhead) +
      " (" + (e.total_with_overhead / GIB).toFixed(2) + " GiB) with the runtime overhead; PyTorch allocates " +
      gb(e.total) + " of it";
    bar.replaceChildren();
    legend.replaceChildren();
    for (const part of ["weights", "KV cache", "activations", "overhead"]) {
      const bytes = part === "overhead" ? e.overhead : e.parts[part];
      const piece = el("span");
      piece.style.width = (100 * bytes / e.total_with_overhead).toFixed(3) + "%";
      piece.style.background = data.colours[part];
      piece.title = part + ": " + thousands(bytes) + " bytes";
      bar.append(piece);
      const key = el("span", "", part + " " + gb(bytes));
      key.style.borderLeft = "12px solid " + data.colours[part];
      legend.append(key);
    }
    machines.replaceChildren(...e.verdicts.map((v, i) =>
      machineRow(v.name, v.available, v.fits, data.machines[i].source)));
    if (own.value !== "" && Number(own.value) >= 0) {
      const available = Math.round(Number(own.value) * GB);
      machines.append(machineRow("your device", available, e.total <= available, "the number you typed"));
    }
    code.textContent = "the same answer in Python: print(memory.estimate(" + data.cfg_code + ", weights=\"" + name +
      "\", context=" + ctx + ", batch=" + b + "))";
    caveat.textContent = name.startsWith("gguf-")
      ? "GGUF: the weights are llama.cpp's file, tensor by tensor; the activations are this package's " +
        "PyTorch model's, not llama.cpp's buffers."
      : "";
    rows.replaceChildren(...e.rows.map(([label, bytes]) => {
      const tr = el("tr");
      tr.append(el("td", label.startsWith("  ") ? "me-indent" : "", label.trim()),
                el("td", "", (bytes / GB).toFixed(3) + " GB"), el("td", "", (bytes / GIB).toFixed(3) + " GiB"),
                el("td", "", thousands(bytes) + " B"));
      return tr;
    }));
    Object.assign(root.dataset, { format: name, context: ctx, batch: b, total: e.total_with_overhead });
  }

  set(state.format, state.context, state.batch);
  root.meView = { estimate: (name, ctx, b) => fitEstimate(data, name, ctx, b), set };
}
