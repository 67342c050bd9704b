// spd explorer: the attribution graph page (the project's own script, no third-party code).
// It streams the graph the server-rendered page asks for (POST /api/v1/ComputeAttributions,
// NDJSON: a header with the nodes, then the edges, strongest first), shows its progress, draws
// it as SVG, and filters the edges it received (edges kept, minimum |attribution|) without
// asking again. Hover highlights a node's edges, click opens its component, shift-click pins it;
// the filters and the pins go into the URL (history.replaceState), so a copied URL reopens them.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_GAP = 13; // px between nodes of one cell
const PER_LINE = 6; // nodes per line of a (module, position) cell before it wraps
const PER_LINE_ONE_POSITION = 40; // the same when the input has one position (a toy vector)
const LINE_GAP = 13; // px between the lines of a cell
const ROW_PAD = 64; // px between module rows
const MIN_COLUMN = 24; // px of a position column
const LEFT = 250; // px for the module names
const TOP = 30;
const BOTTOM = 110; // px for the position labels
const RADIUS = 5;

function decodeTensor(tensor) {
  // A Tensor in the proto3 JSON mapping: int64 as Numbers, float32 as a Float32Array.
  if (!tensor || !tensor.data) return [];
  const bytes = Uint8Array.from(atob(tensor.data), (c) => c.charCodeAt(0));
  if (tensor.dtype === "DTYPE_INT64") return Array.from(new BigInt64Array(bytes.buffer), Number);
  return new Float32Array(bytes.buffer);
}

async function* ndjson(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function layout(header, placement, labels) {
  // Nodes with x, y: a row per module with nodes (forward order, the first at the bottom), the
  // output node on top; each component in the column of its largest-CI position, a cell's nodes
  // by CI (largest first) in lines of PER_LINE (PER_LINE_ONE_POSITION for a one-position input).
  const nodes = (header.nodes || []).map((n, index) => {
    const module = n.module || "";
    const component = Number(n.component || 0);
    const node = {
      index,
      module,
      component,
      key: module + ":" + component,
      maxCi: n.maxCi || 0,
      activePositions: Number(n.activePositions || 0),
      output: Boolean(n.isOutput),
      edges: [],
    };
    const placed = placement[node.key];
    node.position = placed ? placed[0] : labels.length - 1;
    return node;
  });
  const modules = (header.moduleOrder || []).filter((m) => nodes.some((n) => n.module === m));
  const cells = new Map();
  for (const node of nodes) {
    if (node.output) continue;
    const cell = node.module + "\u0000" + node.position;
    if (!cells.has(cell)) cells.set(cell, []);
    cells.get(cell).push(node);
  }
  const perLine = labels.length === 1 ? PER_LINE_ONE_POSITION : PER_LINE;
  const widths = labels.map(() => MIN_COLUMN);
  const lines = new Map(modules.map((m) => [m, 1]));
  for (const members of cells.values()) {
    members.sort((a, b) => b.maxCi - a.maxCi || a.component - b.component);
    const first = members[0];
    const across = Math.min(members.length, perLine);
    widths[first.position] = Math.max(widths[first.position], across * NODE_GAP + NODE_GAP);
    lines.set(first.module, Math.max(lines.get(first.module), Math.ceil(members.length / perLine)));
  }
  const starts = [];
  let x = LEFT;
  for (const w of widths) {
    starts.push(x);
    x += w;
  }
  const width = x + 20;
  const hasOutput = nodes.some((n) => n.output);
  const rows = [];
  let y = TOP + (hasOutput ? LINE_GAP + ROW_PAD : 0);
  for (const module of [...modules].reverse()) {
    const height = (lines.get(module) - 1) * LINE_GAP;
    rows.push({ module, top: y, middle: y + height / 2 });
    y += height + ROW_PAD;
  }
  const rowOf = new Map(rows.map((r) => [r.module, r]));
  for (const members of cells.values()) {
    const p = members[0].position;
    const row = rowOf.get(members[0].module);
    members.forEach((node, i) => {
      const line = Math.floor(i / perLine);
      const inLine = Math.min(perLine, members.length - line * perLine);
      node.x = starts[p] + widths[p] / 2 + ((i % perLine) - (inLine - 1) / 2) * NODE_GAP;
      node.y = row.top + line * LINE_GAP;
    });
  }
  for (const node of nodes) {
    if (!node.output) continue;
    node.x = (LEFT + x) / 2;
    node.y = TOP;
  }
  return { nodes, rows, starts, widths, width, height: y - ROW_PAD + BOTTOM };
}

function componentUrl(section, node) {
  const name = encodeURIComponent(section.dataset.decomposition);
  return `${section.dataset.root}/d/${name}/c/${encodeURIComponent(node.module)}/${node.component}`;
}

function draw(section, graph, labels, edges) {
  const canvas = document.getElementById("graph-canvas");
  const root = svg("svg", {
    class: "graph",
    width: graph.width,
    height: graph.height,
    viewBox: `0 0 ${graph.width} ${graph.height}`,
    role: "img",
  });
  const axis = svg("g", { class: "axis" }, root);
  const bottom = graph.height - BOTTOM + 12;
  labels.forEach((label, p) => {
    const middle = graph.starts[p] + graph.widths[p] / 2;
    svg("line", { class: "column", x1: middle, x2: middle, y1: TOP, y2: bottom - 8 }, axis);
    const text = svg("text", {
      class: "position",
      x: middle,
      y: bottom,
      transform: `rotate(-45 ${middle} ${bottom})`,
      "text-anchor": "end",
    }, axis);
    text.textContent = label;
    svg("title", {}, text).textContent = `position ${p}: ${label}`;
  });
  for (const row of graph.rows) {
    const text = svg("text", { class: "module", x: LEFT - 10, y: row.middle + 4, "text-anchor": "end" }, axis);
    text.textContent = row.module;
  }
  const edgeLayer = svg("g", { class: "edges" }, root);
  const largest = edges.reduce((m, e) => Math.max(m, Math.abs(e.value)), 0) || 1;
  for (let i = edges.length - 1; i >= 0; i--) {
    // weakest first, so that the strongest are drawn on top
    const e = edges[i];
    const s = graph.nodes[e.source];
    const t = graph.nodes[e.target];
    e.element = svg("line", {
      class: "edge " + (e.value >= 0 ? "pos" : "neg"),
      x1: s.x,
      y1: s.y,
      x2: t.x,
      y2: t.y,
      "stroke-width": (0.5 + 5 * Math.abs(e.value) / largest).toFixed(2),
    }, edgeLayer);
    svg("title", {}, e.element).textContent =
      `${s.output ? "output" : s.key} → ${t.output ? "output" : t.key}: ${e.value.toPrecision(4)}`;
    s.edges.push(e);
    t.edges.push(e);
  }
  const nodeLayer = svg("g", { class: "nodes" }, root);
  for (const node of graph.nodes) {
    const parent = node.output ? nodeLayer : svg("a", { href: componentUrl(section, node) }, nodeLayer);
    node.element = svg("circle", {
      class: "node" + (node.output ? " output" : ""),
      cx: node.x,
      cy: node.y,
      r: node.output ? RADIUS + 3 : RADIUS,
      "fill-opacity": node.output ? 1 : (0.25 + 0.75 * Math.min(node.maxCi, 1)).toFixed(2),
      "data-key": node.key,
    }, parent);
    svg("title", {}, node.element).textContent = describe(node, labels);
  }
  canvas.replaceChildren(root);
  return root;
}

function describe(node, labels) {
  if (node.output) return "output node";
  const where = labels[node.position] === undefined ? "" : ` (${labels[node.position]})`;
  return `${node.key}: max CI ${node.maxCi.toFixed(3)} at position ${node.position}${where}, ` +
    `active at ${node.activePositions} position${node.activePositions === 1 ? "" : "s"}`;
}

class GraphPage {
  constructor(section) {
    this.section = section;
    this.labels = JSON.parse(section.dataset.labels);
    this.placement = JSON.parse(section.dataset.placement);
    this.pinned = new Set((section.dataset.pinned || "").split(",").filter(Boolean));
    this.slider = document.getElementById("edges-kept");
    this.minimum = document.getElementById("min-abs");
  }

  progress(text, state) {
    document.getElementById("graph-progress").textContent = text;
    if (state) this.section.dataset.state = state;
  }

  fail(text) {
    const error = document.getElementById("graph-error");
    error.textContent = text;
    error.hidden = false;
    this.progress("The graph could not be computed.", "error");
  }

  async load() {
    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    const timer = setInterval(() => this.progress(`Computing the graph… ${seconds()} s`), 250);
    let header = null;
    const edges = [];
    try {
      const response = await fetch(this.section.dataset.root + "/api/v1/ComputeAttributions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: this.section.dataset.request,
      });
      if (!response.ok) {
        const body = await response.json();
        this.fail(`${body.code}: ${body.message}`);
        return;
      }
      for await (const message of ndjson(response)) {
        if (message.error) {
          this.fail(`${message.error.code}: ${message.error.message}`);
          return;
        }
        if (message.header) {
          header = message.header;
          clearInterval(timer);
        }
        const sources = decodeTensor(message.sources);
        const targets = decodeTensor(message.targets);
        const values = decodeTensor(message.attributions);
        for (let i = 0; i < values.length; i++) {
          edges.push({ source: sources[i], target: targets[i], value: values[i] });
        }
        const total = Number(header.edges || 0);
        this.progress(`Received ${edges.length} of ${total} edges (computed in ${seconds()} s)…`, "streaming");
      }
    } finally {
      clearInterval(timer);
    }
    if (!header) {
      this.fail("the server sent no graph");
      return;
    }
    this.show(header, edges, seconds());
  }

  show(header, edges, seconds) {
    this.edges = edges;
    this.graph = layout(header, this.placement, this.labels);
    this.root = draw(this.section, this.graph, this.labels, edges);
    this.slider.max = String(edges.length);
    this.slider.value = String(Math.min(Number(this.section.dataset.shown), edges.length));
    this.wire();
    this.filter(false);
    this.showPins();
    const candidates = Number(header.candidateEdges || 0);
    const threshold = Number(header.threshold || 0);
    this.progress(
      `${header.nodes.length} nodes (CI > ${threshold}) and the ${edges.length} strongest of ` +
        `${candidates} non-zero edges, in ${seconds} s.`,
      "done",
    );
  }

  wire() {
    this.slider.addEventListener("input", () => this.filter(true));
    this.minimum.addEventListener("input", () => this.filter(true));
    const info = document.getElementById("graph-info");
    const initial = info.textContent;
    for (const node of this.graph.nodes) {
      node.element.addEventListener("mouseenter", () => {
        this.root.classList.add("focus");
        node.element.classList.add("hover");
        for (const e of node.edges) e.element.classList.add("hl");
        const shown = node.edges.filter((e) => e.on).length;
        info.textContent = `${describe(node, this.labels)}; ${shown} of its ${node.edges.length} edges shown.`;
      });
      node.element.addEventListener("mouseleave", () => {
        this.root.classList.remove("focus");
        node.element.classList.remove("hover");
        for (const e of node.edges) e.element.classList.remove("hl");
        info.textContent = initial;
      });
      if (node.output) continue;
      node.element.parentNode.addEventListener("click", (event) => {
        if (!event.shiftKey) return; // a plain click follows the link to the component page
        event.preventDefault();
        if (this.pinned.has(node.key)) this.pinned.delete(node.key);
        else this.pinned.add(node.key);
        this.showPins();
        this.remember();
      });
    }
  }

  filter(fromControl) {
    const keep = Number(this.slider.value);
    const minimum = Math.max(Number(this.minimum.value) || 0, 0);
    const connected = new Set();
    let shown = 0;
    this.edges.forEach((e, i) => {
      e.on = i < keep && Math.abs(e.value) >= minimum;
      e.element.classList.toggle("off", !e.on);
      if (e.on) {
        shown++;
        connected.add(e.source);
        connected.add(e.target);
      }
    });
    for (const node of this.graph.nodes) {
      node.element.classList.toggle("isolated", !connected.has(node.index));
    }
    document.getElementById("edges-kept-value").textContent = String(keep);
    const counts = document.getElementById("graph-counts");
    counts.dataset.edges = String(shown);
    counts.dataset.nodes = String(this.graph.nodes.length);
    counts.dataset.connected = String(connected.size);
    counts.textContent = `${shown} of ${this.edges.length} edges shown; ` +
      `${connected.size} of ${this.graph.nodes.length} nodes have a shown edge`;
    if (fromControl) this.remember();
  }

  showPins() {
    const byKey = new Map(this.graph.nodes.map((n) => [n.key, n]));
    this.root.classList.toggle("has-pins", this.pinned.size > 0);
    for (const node of this.graph.nodes) node.element.classList.toggle("pinned", this.pinned.has(node.key));
    for (const e of this.edges) {
      const pin = this.pinned.has(this.graph.nodes[e.source].key) || this.pinned.has(this.graph.nodes[e.target].key);
      e.element.classList.toggle("pin", pin);
    }
    const list = document.getElementById("pinned-list");
    list.replaceChildren();
    for (const key of this.pinned) {
      const item = document.createElement("li");
      const node = byKey.get(key);
      const [module, component] = [key.slice(0, key.lastIndexOf(":")), key.slice(key.lastIndexOf(":") + 1)];
      const link = document.createElement("a");
      link.className = "pinned-component";
      link.href = componentUrl(this.section, { module, component });
      link.textContent = key;
      item.appendChild(link);
      const note = node ? ` — ${describe(node, this.labels).split(": ")[1]}` : " — not active in this graph";
      item.appendChild(document.createTextNode(note));
      list.appendChild(item);
    }
    if (!this.pinned.size) {
      const item = document.createElement("li");
      item.className = "meta";
      item.textContent = "none (shift-click a node)";
      list.appendChild(item);
    }
  }

  remember() {
    const url = new URL(window.location.href);
    const keep = Number(this.slider.value);
    if (keep < this.edges.length) url.searchParams.set("edges", String(keep));
    else url.searchParams.delete("edges");
    const minimum = Number(this.minimum.value) || 0;
    if (minimum > 0) url.searchParams.set("min_abs", String(minimum));
    else url.searchParams.delete("min_abs");
    if (this.pinned.size) url.searchParams.set("pinned", [...this.pinned].join(","));
    else url.searchParams.delete("pinned");
    window.history.replaceState(null, "", url);
    const hidden = document.querySelector("#graph-form input[name=pinned]");
    hidden.value = [...this.pinned].join(",");
    hidden.disabled = this.pinned.size === 0;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("graph");
  if (!section) return;
  const page = new GraphPage(section);
  page.load().catch((err) => page.fail(String(err)));
});
