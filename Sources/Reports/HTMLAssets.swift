/// The style and script of the HTML report, written for it (no library): plain DOM and SVG, no
/// network, no eval. The script reads the JSON in `#profile-data` (see `HTMLReport.model()`).
enum HTMLAssets {
    static let style = #"""
    :root { --py: #2f6fdb; --nat: #16a34a; --sys: #e09b1a; --ink: #1d2430; --mute: #6b7383; --line: #e3e6ec;
            --bg: #ffffff; --band: #f6f7f9; --hit: #ffe58a; font-family: system-ui, -apple-system, "DejaVu Sans", sans-serif; }
    * { box-sizing: border-box; }
    body { margin: 0; color: var(--ink); background: var(--bg); font-size: 14px; }
    header { padding: 14px 22px 8px; border-bottom: 1px solid var(--line); }
    h1 { font-size: 19px; margin: 0 0 4px; font-weight: 600; }
    h2 { font-size: 16px; margin: 22px 0 8px; font-weight: 600; }
    h3 { font-size: 14px; margin: 0; font-weight: 600; display: inline; }
    nav { position: sticky; top: 0; z-index: 5; background: var(--bg); border-bottom: 1px solid var(--line); padding: 6px 22px; }
    nav a { margin-right: 16px; color: var(--py); text-decoration: none; font-weight: 500; }
    main { padding: 0 22px 40px; }
    .sub { color: var(--mute); }
    .legend span { display: inline-block; margin-right: 14px; }
    .sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
    .py { background: var(--py); } .nat { background: var(--nat); } .sys { background: var(--sys); }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 8px 0; }
    dl.facts dt { color: var(--mute); } dl.facts dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
    .split { display: flex; height: 14px; width: 100%; max-width: 640px; border-radius: 3px; overflow: hidden; background: var(--band); }
    table { border-collapse: collapse; width: 100%; }
    th, td { padding: 2px 6px; text-align: right; white-space: nowrap; border-bottom: 1px solid var(--line); }
    th { position: sticky; top: 31px; background: var(--band); font-weight: 600; font-size: 12px; cursor: pointer; user-select: none; }
    th.src, td.src { text-align: left; width: 100%; }
    td.src { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre; overflow: hidden; text-overflow: ellipsis; max-width: 0; }
    td.num { font-variant-numeric: tabular-nums; }
    tr.ctx td { color: var(--mute); } tr.gap td { color: var(--mute); text-align: left; border-bottom: none; }
    tr.leak td.src { background: #fde8e8; }
    td.barcell { width: 120px; min-width: 120px; }
    .bar { display: flex; height: 10px; background: var(--band); border-radius: 2px; overflow: hidden; }
    svg.spark { width: 72px; height: 16px; vertical-align: middle; }
    details.file { margin: 10px 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
    details.file > summary { cursor: pointer; padding: 2px 0; }
    #flame-box { position: relative; width: 100%; overflow: hidden; border: 1px solid var(--line); border-radius: 6px; }
    .node { position: absolute; height: 17px; overflow: hidden; white-space: nowrap; font-size: 11px; line-height: 17px;
            padding: 0 3px; color: #fff; border-right: 1px solid #fff; border-bottom: 1px solid #fff; cursor: pointer;
            font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
    .node.dim { opacity: 0.25; } .node.match { outline: 2px solid #111; z-index: 2; }
    .node.ancestor { opacity: 0.75; }
    #flame-tools { margin: 6px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
    input[type=search] { padding: 4px 8px; border: 1px solid var(--line); border-radius: 4px; min-width: 260px; font-size: 13px; }
    button { padding: 3px 10px; border: 1px solid var(--line); background: var(--band); border-radius: 4px; cursor: pointer; }
    #mem-chart { width: 100%; max-width: 900px; height: 220px; border: 1px solid var(--line); border-radius: 6px; }
    .tip { color: var(--mute); font-size: 12px; }
    """#

    static let script = #"""
    "use strict";
    (function () {
      const started = performance.now();
      const data = JSON.parse(document.getElementById("profile-data").textContent);
      const COLORS = { py: "#2f6fdb", nat: "#16a34a", sys: "#e09b1a" };

      function el(tag, attrs, ...children) {
        const node = document.createElement(tag);
        for (const [key, value] of Object.entries(attrs || {})) {
          if (value === null || value === undefined) continue;
          if (key === "class") node.className = value;
          else if (key === "text") node.textContent = value;
          else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
          else node.setAttribute(key, value);
        }
        for (const child of children) if (child !== null && child !== undefined) node.append(child);
        return node;
      }
      const svgNS = "http://www.w3.org/2000/svg";
      function svg(tag, attrs) {
        const node = document.createElementNS(svgNS, tag);
        for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
        return node;
      }
      const pct = (v) => (v >= 0.05 ? v.toFixed(1) + "%" : "");
      const mb = (v) => (v >= 0.05 ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " MB" : "");
      const base = (path) => String(path).split("/").pop();

      function splitBar(py, nat, sys, scale) {
        const box = el("div", { class: "bar" });
        for (const [value, cls] of [[py, "py"], [nat, "nat"], [sys, "sys"]]) {
          if (value > 0) box.append(el("span", { class: cls, style: "width:" + Math.min(100, value / scale * 100) + "%" }));
        }
        return box;
      }

      function sparkline(values, color) {
        const box = svg("svg", { class: "spark", viewBox: "0 0 72 16", preserveAspectRatio: "none" });
        if (!values || values.length === 0) return box;
        const top = Math.max(...values) || 1;
        const step = values.length > 1 ? 72 / (values.length - 1) : 0;
        const points = values.map((v, i) => (i * step).toFixed(1) + "," + (15 - (v / top) * 14).toFixed(1));
        if (values.length === 1) points.push("72," + points[0].split(",")[1]);
        box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": "1.5" }));
        return box;
      }

      // ---- header, navigation, facts ----
      const facts = data.facts || [];
      const fact = (name) => (facts.find((f) => f[0] === name) || [])[1];
      document.body.append(
        el("header", {},
          el("h1", { text: "scalene-attach profile" + (fact("command") ? " · " + fact("command") : "") }),
          el("div", { class: "sub", text: [fact("pid") && "pid " + fact("pid"), fact("Python") && "Python " + fact("Python"),
            fact("duration"), fact("samples")].filter(Boolean).join(" · ") })),
        el("nav", {}, ...[["#overview", "Overview"], ["#files", "Lines"], ["#flame", "Flame graph"], ["#memory", "Memory"],
          ["#threads", "Threads"], ["#facts", "Facts"]].map(([href, text]) => el("a", { href, text }))));
      const main = el("main");
      document.body.append(main);

      // ---- overview: the time split and the hottest lines ----
      const files = data.files || [];
      const byFile = new Map(files.map((f) => [f.name, f]));
      let total = { py: 0, nat: 0, sys: 0 };
      for (const file of files) for (const row of file.lines) if (row[11]) { total.py += row[1]; total.nat += row[2]; total.sys += row[3]; }
      const overview = el("section", { id: "overview" }, el("h2", { text: "Where the time went" }));
      overview.append(el("div", { class: "legend" },
        el("span", {}, el("i", { class: "sw py" }), "Python " + total.py.toFixed(1) + "%"),
        el("span", {}, el("i", { class: "sw nat" }), "native " + total.nat.toFixed(1) + "%"),
        el("span", {}, el("i", { class: "sw sys" }), "system " + total.sys.toFixed(1) + "%"),
        el("span", { class: "tip", text: "shares of all sampled time in profiled files (wall time × threads)" })));
      const split = el("div", { class: "split" });
      for (const [value, cls] of [[total.py, "py"], [total.nat, "nat"], [total.sys, "sys"]]) split.append(el("span", { class: cls, style: "width:" + value + "%" }));
      overview.append(split);
      const hotTable = el("table", { id: "hot" });
      hotTable.append(el("thead", {}, el("tr", {}, ...["where", "time", "Python", "native", "system", "memory", "copy MB/s", "source"].map((t, i) =>
        el("th", { class: i === 7 ? "src" : null, text: t })))));
      const hotBody = el("tbody");
      const hotRows = [];
      for (const [name, line] of data.hot || []) {
        const file = byFile.get(name);
        const row = file && file.lines.find((r) => r[0] === line);
        if (row) hotRows.push([name, row]);
      }
      hotRows.sort((a, b) => (b[1][1] + b[1][2] + b[1][3]) - (a[1][1] + a[1][2] + a[1][3]) || b[1][4] - a[1][4]);
      const hotScale = Math.max(1e-9, ...hotRows.map(([, r]) => r[1] + r[2] + r[3]));
      for (const [name, row] of hotRows.slice(0, 15)) {
        hotBody.append(el("tr", { "data-file": name, "data-line": String(row[0]) },
          el("td", { text: base(name) + ":" + row[0], title: name }),
          el("td", { class: "barcell" }, splitBar(row[1], row[2], row[3], hotScale)),
          el("td", { class: "num", text: pct(row[1]) }), el("td", { class: "num", text: pct(row[2]) }),
          el("td", { class: "num", text: pct(row[3]) }), el("td", { class: "num", text: mb(row[4]) }),
          el("td", { class: "num", text: row[7] >= 0.005 ? row[7].toFixed(2) : "" }),
          el("td", { class: "src", text: row[8].trim(), title: row[8] })));
      }
      if (hotRows.length === 0) hotBody.append(el("tr", {}, el("td", { class: "src", colspan: "8", text: "no samples landed in profiled files" })));
      hotTable.append(hotBody);
      overview.append(el("h2", { text: "Hottest lines" }), hotTable);
      main.append(overview);

      // ---- per-file line tables ----
      const filesSection = el("section", { id: "files" }, el("h2", { text: "Lines, per file" }),
        el("div", { class: "tip", text: "Lines with data and two lines around them. Time: shares of all sampled time; memory: MB allocated on the line, the share of it by Python's allocator, the line's peak footprint and its timeline; the grey sparkline shows when the line was sampled. Click a column title to sort, again to reverse." }));
      const columns = ["line", "time", "Python", "native", "system", "MB", "Python share", "peak", "timeline", "copy MB/s", "source"];
      function lineTable(file, rows, functionRows) {
        const table = el("table", { class: functionRows ? "functions" : "lines" });
        const head = el("tr");
        const body = el("tbody");
        const scale = Math.max(1e-9, ...rows.map((r) => r[1] + r[2] + r[3]));
        const leaks = new Set((file.leaks || []).map((l) => l[0]));
        const keys = [(r) => r[0], (r) => r[1] + r[2] + r[3], (r) => r[1], (r) => r[2], (r) => r[3], (r) => r[4], (r) => r[5], (r) => r[6], (r) => r[6], (r) => r[7], (r) => r[8]];
        let order = { column: 0, descending: false };
        columns.forEach((title, index) => head.append(el("th", { class: index === 10 ? "src" : null, text: functionRows && index === 10 ? "function" : title,
          onclick: () => { order = { column: index, descending: order.column === index ? !order.descending : index !== 0 && index !== 10 }; fill(); } })));
        function fill() {
          body.replaceChildren();
          const sorted = rows.slice();
          const key = keys[order.column];
          sorted.sort((a, b) => { const x = key(a), y = key(b); const c = x < y ? -1 : x > y ? 1 : 0; return order.descending ? -c : c; });
          let previous = null;
          for (const row of sorted) {
            if (!functionRows && order.column === 0 && previous !== null && row[0] > previous + 1) {
              body.append(el("tr", { class: "gap" }, el("td", { text: "⋯" }), el("td", { colspan: "10" })));
            }
            previous = row[0];
            const has = row[11];
            const tr = el("tr", { class: (has ? "" : "ctx") + (leaks.has(row[0]) ? " leak" : ""), "data-line": String(row[0]) });
            tr.append(el("td", { class: "num", text: String(row[0]) }),
              el("td", { class: "barcell" }, has ? splitBar(row[1], row[2], row[3], scale) : null),
              el("td", { class: "num", text: pct(row[1]) }), el("td", { class: "num", text: pct(row[2]) }), el("td", { class: "num", text: pct(row[3]) }),
              el("td", { class: "num", text: mb(row[4]) }), el("td", { class: "num", text: row[4] > 0 ? Math.round(row[5] * 100) + "%" : "" }),
              el("td", { class: "num", text: mb(row[6]) }),
              el("td", {}, row[10] && row[10].length ? sparkline(row[10], COLORS.py) : sparkline(row[9], "#9aa1ad")),
              el("td", { class: "num", text: row[7] >= 0.005 ? row[7].toFixed(2) : "" }),
              el("td", { class: "src", text: row[8], title: leaks.has(row[0]) ? "possible memory leak" : null }));
            body.append(tr);
          }
        }
        fill();
        table.append(el("thead", {}, head), body);
        return table;
      }
      files.forEach((file, index) => {
        const details = el("details", { class: "file", "data-file": file.name });
        if (index < 4) details.open = true;
        details.append(el("summary", {}, el("h3", { text: file.name }), el("span", { class: "sub", text: "  " + file.percent.toFixed(1) + "% of time" +
          (file.omitted > 0 ? " · " + file.omitted + " cooler lines not embedded" : "") })));
        details.append(lineTable(file, file.lines, false));
        if (file.functions.length) {
          details.append(el("h2", { text: "Functions" }), lineTable(file, file.functions, true));
        }
        for (const [line, likelihood, velocity] of file.leaks || []) {
          details.append(el("p", { text: "Possible memory leak: line " + line + " (likelihood " + Math.round(likelihood * 100) + "%, " + velocity.toFixed(2) + " MB/s)" }));
        }
        filesSection.append(details);
      });
      if (files.length === 0) filesSection.append(el("p", { text: "No profiled file has data." }));
      main.append(filesSection);

      // ---- flame graph (icicle: callers above callees), zoom by click, search ----
      const stacks = data.stacks || { files: [], frames: [], stacks: [] };
      const root = { name: "all", file: "", children: new Map(), py: 0, nat: 0, sys: 0, depth: 0 };
      for (const [indices, py, nat, sys] of stacks.stacks) {
        let node = root;
        root.py += py; root.nat += nat; root.sys += sys;
        for (const index of indices) {
          const [name, fileIndex, line] = stacks.frames[index];
          const file = stacks.files[fileIndex];
          const key = file + "\u0000" + name;
          let child = node.children.get(key);
          if (!child) { child = { name, file, line, children: new Map(), py: 0, nat: 0, sys: 0, parent: node, depth: node.depth + 1 }; node.children.set(key, child); }
          child.py += py; child.nat += nat; child.sys += sys;
          node = child;
        }
      }
      const sum = (n) => n.py + n.nat + n.sys;
      const flame = el("section", { id: "flame" }, el("h2", { text: "Flame graph of the sampled stacks" }));
      const search = el("input", { type: "search", id: "flame-search", placeholder: "search functions or files…" });
      const found = el("span", { class: "tip" });
      const reset = el("button", { text: "reset zoom", onclick: () => { zoom = root; draw(); } });
      flame.append(el("div", { id: "flame-tools" }, search, reset, found,
        el("span", { class: "legend" }, el("span", {}, el("i", { class: "sw py" }), "mostly Python"), el("span", {}, el("i", { class: "sw nat" }), "mostly native"),
          el("span", {}, el("i", { class: "sw sys" }), "mostly system")),
        el("span", { class: "tip", text: "callers above callees · width = share of time · click to zoom" })));
      const box = el("div", { id: "flame-box" });
      flame.append(box);
      main.append(flame);
      let zoom = root;
      function shade(node) {
        const total = sum(node) || 1;
        const kind = node.py >= node.nat && node.py >= node.sys ? "py" : node.nat >= node.sys ? "nat" : "sys";
        let hash = 0;
        for (const c of node.name) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
        const strength = Math.max(node.py, node.nat, node.sys) / total;
        const hue = { py: 218, nat: 142, sys: 38 }[kind];
        return "hsl(" + hue + "," + (45 + 35 * strength).toFixed(0) + "%," + (36 + (hash % 14)).toFixed(0) + "%)";
      }
      function draw() {
        box.replaceChildren();
        const width = box.clientWidth || 1000;
        const query = search.value.trim().toLowerCase();
        let matched = 0;
        const ancestors = [];
        for (let node = zoom.parent; node; node = node.parent) ancestors.unshift(node);
        const rowHeight = 18;
        let maxDepth = 0;
        function place(node, x, w, depth, ancestor) {
          if (w * width < 0.5 && node !== zoom) return;
          maxDepth = Math.max(maxDepth, depth);
          const total = sum(node);
          const label = node === root ? "all (" + (sum(root) * 100).toFixed(1) + "% of time)" : node.name;
          const div = el("div", { class: "node" + (ancestor ? " ancestor" : ""), "data-name": node.name, "data-file": node.file,
            title: (node === root ? "all sampled stacks" : node.name + " (" + node.file + ":" + node.line + ")") + " — " + (total * 100).toFixed(1) +
              "% of time: Python " + (node.py * 100).toFixed(1) + "%, native " + (node.nat * 100).toFixed(1) + "%, system " + (node.sys * 100).toFixed(1) + "%",
            style: "left:" + (x * 100) + "%;width:" + (w * 100) + "%;top:" + depth * rowHeight + "px;background:" + shade(node) });
          if (w * width > 36) div.textContent = label;
          div.addEventListener("click", () => { zoom = node; draw(); });
          if (query && node !== root) {
            if (node.name.toLowerCase().includes(query) || node.file.toLowerCase().includes(query)) { div.classList.add("match"); if (!ancestor) matched += total; }
            else div.classList.add("dim");
          }
          box.append(div);
          return div;
        }
        ancestors.forEach((node, depth) => place(node, 0, 1, depth, true));
        const zoomTotal = sum(zoom) || 1;
        (function layout(node, x, depth) {
          const w = sum(node) / zoomTotal;
          place(node, x, w, depth, false);
          let offset = x;
          const children = [...node.children.values()].sort((a, b) => sum(b) - sum(a));
          for (const child of children) { layout(child, offset, depth + 1); offset += sum(child) / zoomTotal; }
        })(zoom, 0, ancestors.length);
        box.style.height = (maxDepth + 1) * rowHeight + 4 + "px";
        found.textContent = query ? "matches: " + (matched * 100).toFixed(1) + "% of time" : (stacks.omitted ? stacks.omitted + " rare stacks not embedded" : "");
      }
      search.addEventListener("input", draw);
      if (stacks.stacks.length === 0) box.append(el("p", { class: "tip", text: "no stacks were sampled" }));

      // ---- memory footprint over time, peak marked ----
      const memory = data.memory || { profiled: false };
      const memSection = el("section", { id: "memory" }, el("h2", { text: "Memory footprint over time" }));
      if (!memory.profiled) {
        memSection.append(el("p", { class: "tip", text: "Memory was not profiled (--cpu-only, or the agent could not be loaded)." }));
      } else {
        memSection.append(el("p", { text: "peak " + memory.peak.toFixed(1) + " MB" + (memory.peakFile ? " at " + base(memory.peakFile) + ":" + memory.peakLine : "") +
          " · " + memory.allocated.toFixed(1) + " MB allocated · " + memory.copied.toFixed(1) + " MB copied · the process holds " +
          memory.final.toFixed(1) + " MB at the end" }));
        const W = 900, H = 220, L = 48, B = 24;
        const chart = svg("svg", { id: "mem-chart", viewBox: "0 0 " + W + " " + H });
        const points = memory.footprint;
        const tMax = Math.max(data.elapsed || 0, ...points.map((p) => p[0])) || 1;
        const values = points.map((p) => p[1]);
        const yMax = Math.max(memory.peak, ...values, 0.1);
        const yMin = Math.min(0, ...values);
        const X = (t) => L + (t / tMax) * (W - L - 10);
        const Y = (v) => H - B - ((v - yMin) / (yMax - yMin)) * (H - B - 14);
        chart.append(svg("line", { x1: L, y1: Y(0), x2: W - 10, y2: Y(0), stroke: "#c9ced8" }));
        for (const f of [0.5, 1]) {
          const v = yMin + (yMax - yMin) * f;
          const label = svg("text", { x: 4, y: Y(v) + 4, "font-size": "11", fill: "#6b7383" }); label.textContent = v.toFixed(1) + " MB"; chart.append(label);
        }
        const tl = svg("text", { x: W - 60, y: H - 6, "font-size": "11", fill: "#6b7383" }); tl.textContent = tMax.toFixed(1) + " s"; chart.append(tl);
        if (points.length) {
          chart.append(svg("polyline", { points: points.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" "), fill: "none", stroke: COLORS.py, "stroke-width": "2" }));
          let peak = points[0];
          for (const p of points) if (p[1] > peak[1]) peak = p;
          chart.append(svg("circle", { id: "mem-peak", cx: X(peak[0]), cy: Y(peak[1]), r: 5, fill: "#d93025" }));
          const right = X(peak[0]) > W - 200;
          const pl = svg("text", { x: X(peak[0]) + (right ? -9 : 9), y: Math.max(Y(peak[1]) + 4, 14), "font-size": "12", fill: "#d93025",
            "text-anchor": right ? "end" : "start" });
          pl.textContent = "peak " + peak[1].toFixed(1) + " MB at " + peak[0].toFixed(1) + " s";
          chart.append(pl);
        }
        memSection.append(chart);
      }
      main.append(memSection);

      // ---- threads ----
      const threads = data.threads || [];
      const threadSection = el("section", { id: "threads" }, el("h2", { text: "Threads" }));
      const threadTable = el("table", { id: "thread-table" });
      threadTable.append(el("thead", {}, el("tr", {}, ...["tid", "time", "Python s", "native s", "system s", "GIL held", "name"].map((t, i) => el("th", { class: i === 6 ? "src" : null, text: t })))));
      const threadBody = el("tbody");
      const threadScale = Math.max(1e-9, ...threads.map((t) => t.python + t.native + t.system));
      for (const t of threads) {
        threadBody.append(el("tr", { class: t.idle ? "ctx" : "" },
          el("td", { class: "num", text: t.tid === null ? "?" : String(t.tid) }),
          el("td", { class: "barcell" }, splitBar(t.python, t.native, t.system, threadScale)),
          el("td", { class: "num", text: t.python.toFixed(2) }), el("td", { class: "num", text: t.native.toFixed(2) }),
          el("td", { class: "num", text: t.system.toFixed(2) }), el("td", { class: "num", text: Math.round(t.gil * 100) + "%" }),
          el("td", { class: "src", text: (t.name || "") + (t.idle ? "  (idle: blocked the whole run)" : "") })));
      }
      if (threads.length === 0) threadBody.append(el("tr", {}, el("td", { class: "src", colspan: "7", text: "no thread data in this profile" })));
      threadTable.append(threadBody);
      threadSection.append(threadTable);
      main.append(threadSection);

      // ---- facts ----
      const factSection = el("section", { id: "facts" }, el("h2", { text: "About this run" }));
      const list = el("dl", { class: "facts" });
      for (const [name, value] of facts) list.append(el("dt", { text: name }), el("dd", { text: value }));
      factSection.append(list);
      main.append(factSection);

      draw();
      window.addEventListener("resize", draw);
      document.body.dataset.renderMs = String(Math.round(performance.now() - started));
      document.body.dataset.ready = "1";
    })();
    """#
}
