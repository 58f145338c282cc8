// comicid viewer: a small single-page front end over the JSON API (no framework, no CDN, works offline).
// All user text is written with textContent (never innerHTML), so names such as "<b>" are shown, not run.
"use strict";

const PAGE = 60;
const state = { overview: null, selIds: new Set(), selInst: new Set(), route: [], currentIdentity: null,
                observer: null, pageBoxes: [], focusBox: -1 };

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "style") for (const [k, v] of Object.entries(value)) node.style.setProperty(k, v);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined)
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function colour(id) {
  if (!id) return "#8a8a8a";
  let hash = 2166136261;
  for (const char of id) { hash ^= char.codePointAt(0); hash = Math.imul(hash, 16777619) >>> 0; }
  hash ^= hash >>> 16; hash = Math.imul(hash, 0x85ebca6b) >>> 0;  // finaliser: ids differing in one digit
  hash ^= hash >>> 13; hash = Math.imul(hash, 0xc2b2ae35) >>> 0;  // get unrelated hues
  hash ^= hash >>> 16;
  return `hsl(${hash % 360}, ${60 + (hash >>> 9) % 25}%, ${36 + (hash >>> 17) % 14}%)`;
}

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || data.detail || `HTTP ${response.status}`);
  return data;
}

function toast(message, error = false) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.className = error ? "error" : "";
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, error ? 6000 : 2500);
}

const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
const displayName = (item) => item.name || item.id || "unknown";
const view = () => document.getElementById("view");
const filters = () => ({ book: document.getElementById("filter-book").value, q: document.getElementById("filter-q").value.trim() });

// ---------------------------------------------------------------- overview, header, toolbar
async function refreshOverview() {
  state.overview = await api("/api/overview");
  const o = state.overview;
  document.getElementById("stats").textContent =
    `${o.instances.toLocaleString()} instances · ${o.identities.toLocaleString()} identities · ${o.unknown.toLocaleString()} unknown · ${o.edits} edits`;
  document.getElementById("undo").disabled = !o.can_undo;
  document.getElementById("redo").disabled = !o.can_redo;
  const select = document.getElementById("filter-book");
  if (select.options.length === 1) for (const book of o.books) select.append(el("option", { value: book.book, text: book.book }));
}

function updateToolbar() {
  const bar = document.getElementById("toolbar");
  const ids = state.selIds.size, inst = state.selInst.size;
  bar.hidden = ids === 0 && inst === 0;
  document.getElementById("selection-info").textContent =
    ids ? `${ids} identities selected` : `${inst} instances selected`;
  document.getElementById("act-merge").disabled = ids < 2;
  document.getElementById("act-split").disabled = !(inst > 0 && state.currentIdentity);
  document.getElementById("act-notthis").disabled = inst === 0;
  document.getElementById("act-move").disabled = inst === 0;
}

function clearSelection() {
  state.selIds.clear(); state.selInst.clear();
  document.querySelectorAll(".selected").forEach((node) => node.classList.remove("selected"));
  document.querySelectorAll("input.pick").forEach((node) => { node.checked = false; });
  updateToolbar();
}

async function edit(kind, body, after) {
  try {
    const result = await api(`/api/edit/${kind}`, body);
    clearSelection();
    await refreshOverview();
    toast(`${kind.replace("_", " ")} saved (edit ${result.event.seq})`);
    if (after) after(result); else route();
  } catch (error) { toast(error.message, true); }
}

// ---------------------------------------------------------------- lazy lists
function lazyList(container, fetchPage, render) {
  if (state.observer) state.observer.disconnect();
  let offset = 0, total = Infinity, loading = false;
  const sentinel = el("div", { class: "sentinel" });
  const more = el("button", { class: "more", text: "Load more", hidden: true, onclick: () => load() });
  container.after(sentinel, more);
  async function load() {
    if (loading || offset >= total) return;
    loading = true;
    const data = await fetchPage(offset, PAGE);
    total = data.total;
    for (const item of data.items) container.append(render(item));
    offset += data.items.length;
    more.hidden = offset >= total;
    if (total === 0) container.append(el("div", { class: "empty", text: "Nothing here." }));
    loading = false;
  }
  state.observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) load(); });
  state.observer.observe(sentinel);
  return load();
}

function thumb(item, selectable = true) {
  const node = el("div", { class: "thumb", style: { "--id-colour": colour(item.identity) }, title: item.key,
                           dataset: { key: item.key } },
    el("img", { src: item.crop, alt: item.key, loading: "lazy" }),
    el("div", { class: "tag", text: item.identity || "unknown" }));
  if (selectable) {
    const box = el("input", { type: "checkbox", class: "pick", title: "Select", "aria-label": `select ${item.key}` });
    bindPick(box, node, state.selInst, state.selIds, item.key);
    node.prepend(box);
    box.style.position = "absolute"; box.style.top = "4px"; box.style.left = "4px";
  }
  node.addEventListener("click", () => showInstance(item.key));
  return node;
}

// A selection checkbox on a card: selecting instances and selecting identities exclude each other.
function bindPick(box, card, selected, other, value) {
  box.addEventListener("click", (event) => {
    event.stopPropagation();
    card.classList.toggle("selected", box.checked);
    if (box.checked) selected.add(value); else selected.delete(value);
    other.clear();
    updateToolbar();
  });
}

// ---------------------------------------------------------------- views
async function identitiesView() {
  const { book, q: search } = filters();
  const grid = el("div", { class: "grid", id: "identity-grid" });
  view().replaceChildren(el("h2", { text: "Identities" }, el("span", { class: "sub", text: book ? `in ${book}` : "across the collection" })), grid);
  await lazyList(grid, (offset, limit) => api(`/api/identities?${q({ book, q: search, offset, limit })}`), (item) => {
    const pick = el("input", { type: "checkbox", class: "pick", title: "Select for merge", "aria-label": `select ${item.id}` });
    const card = el("div", { class: "card", style: { "--id-colour": colour(item.id) }, dataset: { id: item.id } },
      pick,
      el("img", { src: item.cover.crop, alt: displayName(item), loading: "lazy" }),
      el("div", { class: "label" },
        el("div", { class: "name", text: displayName(item), title: item.id }),
        el("div", { class: "meta", text: `${item.count} · ${item.books.join(", ")}${item.confirmed ? ` · ${item.confirmed} confirmed` : ""}` })));
    bindPick(pick, card, state.selIds, state.selInst, item.id);
    card.addEventListener("click", () => { location.hash = `#/identity/${encodeURIComponent(item.id)}`; });
    return card;
  });
}

async function identityView(id) {
  state.currentIdentity = id;
  let data;
  try { data = await api(`/api/identity?${q({ id, limit: 1 })}`); }
  catch (error) { view().replaceChildren(el("div", { class: "empty", text: error.message })); return; }
  const nameInput = el("input", { type: "text", id: "roster-name", value: data.name, maxlength: 200, placeholder: "Name" });
  const aliasInput = el("input", { type: "text", id: "roster-aliases", value: data.aliases.join(", "), placeholder: "comma-separated" });
  const attrInput = el("textarea", { id: "roster-attributes", placeholder: "gender: female\nvoice: alto" });
  attrInput.value = Object.entries(data.attributes).map(([k, v]) => `${k}: ${v}`).join("\n");
  const save = el("button", { class: "primary", id: "roster-save", text: "Save name", onclick: () => {
    const attributes = {};
    for (const line of attrInput.value.split("\n")) {
      const at = line.indexOf(":");
      if (line.trim() && at > 0) attributes[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const aliases = aliasInput.value.split(",").map((a) => a.trim()).filter(Boolean);
    edit("name", { identity: id, name: nameInput.value, aliases, attributes });
  } });
  const confirm = el("button", { text: "Confirm all", title: "Mark every member as checked (must-links)",
                                 onclick: () => edit("confirm", { identity: id }) });
  const title = el("h2", { id: "identity-title", text: data.name || id },
                   el("span", { class: "sub", text: `${id} · ${data.total} instances` }));
  const roster = el("div", { class: "roster", style: { "--id-colour": colour(id) } },
    el("label", { for: "roster-name", text: "Name" }), nameInput,
    el("label", { for: "roster-aliases", text: "Aliases" }), aliasInput,
    el("label", { for: "roster-attributes", text: "Attributes" }), attrInput,
    el("div", { class: "actions" }, save, confirm));
  const grid = el("div", { class: "thumbs", id: "member-grid" });
  view().replaceChildren(title, roster, grid);
  await lazyList(grid, (offset, limit) => api(`/api/identity?${q({ id, offset, limit })}`), (item) => thumb(item));
}

async function pagesView(book, page) {
  const books = state.overview.books;
  if (!books.length) { view().replaceChildren(el("div", { class: "empty", text: "No pages." })); return; }
  const current = books.find((b) => b.book === book) || books.find((b) => b.book === filters().book) || books[0];
  page = current.pages.includes(page) ? page : current.pages[0];
  const data = await api(`/api/page?${q({ book: current.book, page })}`);
  const list = el("div", { class: "pagelist" }, current.pages.map((p) =>
    el("a", { href: `#/page/${encodeURIComponent(current.book)}/${encodeURIComponent(p)}`, class: p === page ? "current" : null, text: p })));
  const pager = el("div", { class: "pager" },
    el("select", { id: "page-book", onchange: (e) => { location.hash = `#/page/${encodeURIComponent(e.target.value)}/`; } },
      books.map((b) => el("option", { value: b.book, text: b.book, selected: b.book === current.book }))),
    el("button", { text: "◀ previous", disabled: !data.previous, onclick: () => gotoPage(data.previous) }),
    el("button", { text: "next ▶", disabled: !data.next, onclick: () => gotoPage(data.next) }),
    el("span", { class: "sub", text: `${data.boxes.length} boxes` }),
    el("button", { id: "draw-box", text: "Draw box", title: "Drag on the page to add a box",
                   onclick: (e) => { wrap.classList.toggle("drawing"); e.target.classList.toggle("active"); } }),
    el("select", { id: "draw-kind", "aria-label": "kind of the drawn box" },
      ["face", "body"].map((k) => el("option", { value: k, text: k }))),
    el("input", { id: "draw-identity", type: "search", list: "identity-options", maxlength: "300",
                  placeholder: "identity (optional)", "aria-label": "identity of the drawn box" }));
  function gotoPage(p) { if (p) location.hash = `#/page/${encodeURIComponent(current.book)}/${encodeURIComponent(p)}`; }
  state.gotoPage = (step) => gotoPage(step > 0 ? data.next : data.previous);
  const image = el("img", { src: data.image, alt: `${current.book} ${page}`, id: "page-image" });
  const wrap = el("div", { class: "page-wrap" }, image);
  state.pageBoxes = [];
  image.addEventListener("load", () => {
    const w = image.naturalWidth / 100, h = image.naturalHeight / 100;  // percentages: boxes follow any resize
    for (const box of data.boxes) {
      const [x0, y0, x1, y1] = box.box;
      const node = el("div", { class: `box ${box.kind}`, title: `${box.name || box.identity || "unknown"} (${box.kind})`,
        style: { left: `${x0 / w}%`, top: `${y0 / h}%`, width: `${(x1 - x0) / w}%`,
                 height: `${(y1 - y0) / h}%`, "--id-colour": colour(box.identity) },
        dataset: { key: box.instance }, onclick: () => showInstance(box.instance) });
      if (box.kind !== "body") node.append(el("span", { class: "boxlabel", text: box.name || box.identity || "?" }));
      wrap.append(node);
      state.pageBoxes.push(node);
    }
  });
  drawing(wrap, image, current.book, page);
  view().replaceChildren(el("h2", { text: `${current.book} · ${page}` }), pager, list, wrap);
}

function drawing(wrap, image, book, page) {  // "draw box" mode: drag a rectangle, saved as an add_box edit
  let start = null, band = null;
  const at = (event) => {  // page pixels of a pointer position
    const r = image.getBoundingClientRect(), sx = image.naturalWidth / r.width, sy = image.naturalHeight / r.height;
    return [Math.max(0, Math.min(image.naturalWidth, (event.clientX - r.left) * sx)),
            Math.max(0, Math.min(image.naturalHeight, (event.clientY - r.top) * sy))];
  };
  wrap.addEventListener("mousedown", (event) => {
    if (!wrap.classList.contains("drawing")) return;
    event.preventDefault();
    start = at(event);
    band = el("div", { class: "box band" });
    wrap.append(band);
  });
  wrap.addEventListener("mousemove", (event) => {
    if (!start) return;
    const [x, y] = at(event), w = image.naturalWidth / 100, h = image.naturalHeight / 100;
    Object.assign(band.style, { left: `${Math.min(x, start[0]) / w}%`, top: `${Math.min(y, start[1]) / h}%`,
      width: `${Math.abs(x - start[0]) / w}%`, height: `${Math.abs(y - start[1]) / h}%` });
  });
  wrap.addEventListener("mouseup", (event) => {
    if (!start) return;
    const [x, y] = at(event), box = [Math.min(x, start[0]), Math.min(y, start[1]), Math.max(x, start[0]), Math.max(y, start[1])];
    start = null; band.remove();
    const identity = document.getElementById("draw-identity").value.trim();
    edit("add_box", { book, page, kind: document.getElementById("draw-kind").value, box: box.map(Math.round),
                      ...(identity ? { identity } : {}) });
  });
}

async function instancesView() {
  const { book } = filters();
  const unknown = el("input", { type: "checkbox", id: "f-unknown", checked: state.fUnknown || false });
  const low = el("input", { type: "checkbox", id: "f-low", checked: state.fLow || false });
  const rerender = () => { state.fUnknown = unknown.checked; state.fLow = low.checked; instancesView(); };
  unknown.addEventListener("change", rerender); low.addEventListener("change", rerender);
  const grid = el("div", { class: "thumbs", id: "instance-grid" });
  view().replaceChildren(el("h2", { text: "Instances" }),
    el("div", { class: "pager" }, el("label", {}, unknown, " unknown only"), el("label", {}, low, " low confidence (< 0.5)")), grid);
  await lazyList(grid, (offset, limit) => api(`/api/instances?${q({ book, unknown: state.fUnknown ? "true" : "",
    max_confidence: state.fLow ? 0.5 : "", offset, limit })}`), (item) => thumb(item));
}

async function editsView() {
  const data = await api("/api/edits?limit=200");
  const rows = data.items.map((e) => el("tr", { dataset: { seq: e.seq } },
    el("td", { text: e.seq }), el("td", { text: e.type }), el("td", { text: e.who }), el("td", { text: e.when.replace("T", " ").slice(0, 19) }),
    el("td", { text: summarise(e) })));
  view().replaceChildren(el("h2", { text: "Edit log" }, el("span", { class: "sub", text: `${data.total} events, newest first` })),
    data.total ? el("table", { class: "log" }, el("tr", {}, ["#", "type", "who", "when (UTC)", "what"].map((h) => el("th", { text: h }))), rows)
               : el("div", { class: "empty", text: "No edits yet." }));
}

function summarise(event) {
  const d = event.data;
  switch (event.type) {
    case "merge": return `${d.sources.join(", ")} → ${d.into} (${d.instances.length} instances)`;
    case "split": return `${d.instances.length} instances of ${d.source} → ${d.into}`;
    case "move": return `${d.instances.length} instances → ${d.target}`;
    case "not_this": return `${d.instances.length} instances are not ${[...new Set(d.identities)].join(", ")}`;
    case "confirm": return `${d.instances.length} instances confirmed as ${d.identity}`;
    case "name": return `${d.identity}: ${[d.name, ...(d.aliases || [])].filter(Boolean).join(" / ")}`;
    case "add_box": return `${d.kind} box drawn on ${d.row.book} / ${d.row.page}${d.identity ? ` as ${d.identity}` : ""}`;
    case "delete_box": return `${d.kind} box of ${d.row.book} / ${d.row.page} deleted`;
    default: return `edit ${d.target}`;
  }
}

// ---------------------------------------------------------------- instance detail and search
async function showInstance(key) {
  const panel = document.getElementById("detail");
  let data;
  try { data = await api(`/api/instance?${q({ key })}`); } catch (error) { toast(error.message, true); return; }
  const parts = el("div", { class: "parts" }, Object.entries(data.parts).map(([kind, src]) =>
    el("figure", {}, el("img", { src, alt: `${kind} of ${key}` }), el("figcaption", { text: kind }))));
  const idLink = data.identity
    ? el("a", { class: "idlink", href: `#/identity/${encodeURIComponent(data.identity)}` }, el("span", { class: "swatch", style: { "--id-colour": colour(data.identity) } }), data.name || data.identity)
    : el("span", { text: "unknown" });
  const facts = el("dl", { class: "facts" },
    el("dt", { text: "instance" }), el("dd", { text: data.key }),
    el("dt", { text: "identity" }), el("dd", {}, idLink),
    el("dt", { text: "confidence" }), el("dd", { text: data.confidence.toFixed(3) }),
    el("dt", { text: "checked" }), el("dd", { text: data.confirmed ? "confirmed by a person" : "machine" }),
    el("dt", { text: "page" }), el("dd", {}, el("a", { class: "idlink", href: `#/page/${encodeURIComponent(data.book)}/${encodeURIComponent(data.page)}`, text: `${data.book} / ${data.page}` })),
    el("dt", { text: "panel" }), el("dd", { text: data.panel || "—" }),
    el("dt", { text: "text" }), el("dd", { text: data.text || "—" }),
    data.rejected.length ? el("dt", { text: "not" }) : null, data.rejected.length ? el("dd", { text: data.rejected.join(", ") }) : null);
  const similar = el("div", { class: "thumbs", id: "similar" });
  const buttons = el("div", { class: "pager" },
    el("button", { id: "find-similar", text: "Find similar", disabled: !state.overview.search, onclick: async () => {
      const result = await api(`/api/similar?${q({ key, k: 12 })}`);
      similar.replaceChildren(...result.items.map((item) => thumb(item, false)));
    } }),
    data.identity ? el("button", { text: "Not this", onclick: () => edit("not_this", { instances: [key], identity: data.identity }) }) : null,
    ...Object.keys(data.parts).map((kind) => el("button", { class: "delete-box", text: `Delete ${kind} box`,
      title: "Remove this box (e.g. a false detection); undo brings it back",
      onclick: () => edit("delete_box", { instance: key, kind }, () => { closeDetail(); route(); }) })),
    el("button", { text: "Close", onclick: closeDetail }));
  panel.replaceChildren(el("h2", { text: "Instance" }), parts, facts, buttons, similar);
  panel.hidden = false;
  view().classList.add("with-detail");
}

function closeDetail() { document.getElementById("detail").hidden = true; view().classList.remove("with-detail"); }

// ---------------------------------------------------------------- actions
function actMerge() {
  const ids = [...state.selIds];
  if (ids.length < 2) return toast("select two or more identities to merge", true);
  edit("merge", { identities: ids }, () => { location.hash = `#/identity/${encodeURIComponent(ids[0])}`; route(); });
}
function actSplit() {
  if (!state.currentIdentity || !state.selInst.size) return toast("select instances of an identity to split off", true);
  edit("split", { identity: state.currentIdentity, instances: [...state.selInst] });
}
function actNotThis() {
  if (!state.selInst.size) return toast("select instances first", true);
  const body = { instances: [...state.selInst] };
  if (state.currentIdentity) body.identity = state.currentIdentity;
  edit("not_this", body);
}
function actMove() {
  if (!state.selInst.size) return toast("select instances first", true);
  const input = document.getElementById("move-target");
  const typed = input.value.trim();
  if (!typed) { input.focus(); return toast("type the target identity beside the button"); }
  const option = [...document.getElementById("identity-options").options].find((o) => o.value === typed || o.label === typed);
  edit("move", { instances: [...state.selInst], target: option ? option.value : typed });
  input.value = "";
}

async function suggestTargets() {  // the datalist offers identities matching what is typed (ids, names, aliases)
  const typed = document.getElementById("move-target").value.trim();
  const data = await api(`/api/identities?${q({ q: typed, limit: 20 })}`);
  document.getElementById("identity-options").replaceChildren(
    ...data.items.map((item) => el("option", { value: item.id, label: item.name ? `${item.name} (${item.id})` : item.id })));
}

// ---------------------------------------------------------------- routing and keys
async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  state.currentIdentity = null;
  clearSelection();
  for (const [name, prefix] of [["identities", ""], ["pages", "page"], ["instances", "instances"], ["edits", "edits"]])
    document.getElementById(`nav-${name}`).classList.toggle("active", parts[0] === prefix || (prefix === "page" && parts[0] === "pages"));
  try {
    if (parts[0] === "identity") await identityView(parts.slice(1).join("/"));
    else if (parts[0] === "page" || parts[0] === "pages") await pagesView(parts[1], parts[2]);
    else if (parts[0] === "instances") await instancesView();
    else if (parts[0] === "edits") await editsView();
    else await identitiesView();
    view().append(document.getElementById("help").content.cloneNode(true));
  } catch (error) { toast(error.message, true); }
}

function onKey(event) {
  if (event.target.matches("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const actions = {
    g: () => { location.hash = "#/"; }, p: () => { location.hash = "#/pages"; }, i: () => { location.hash = "#/instances"; },
    "/": () => document.getElementById("filter-q").focus(), m: actMerge, s: actSplit, n: actNotThis, v: actMove,
    u: () => !document.getElementById("undo").disabled && edit("undo", {}),
    U: () => !document.getElementById("redo").disabled && edit("redo", {}),
    j: () => state.gotoPage && location.hash.startsWith("#/page") && state.gotoPage(1),
    k: () => state.gotoPage && location.hash.startsWith("#/page") && state.gotoPage(-1),
    Escape: () => { closeDetail(); clearSelection(); },
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

async function start() {
  document.getElementById("undo").addEventListener("click", () => edit("undo", {}));
  document.getElementById("redo").addEventListener("click", () => edit("redo", {}));
  document.getElementById("act-merge").addEventListener("click", actMerge);
  document.getElementById("act-split").addEventListener("click", actSplit);
  document.getElementById("act-notthis").addEventListener("click", actNotThis);
  document.getElementById("act-move").addEventListener("click", actMove);
  document.getElementById("act-clear").addEventListener("click", clearSelection);
  let suggestTimer;
  document.getElementById("move-target").addEventListener("input", () => {
    clearTimeout(suggestTimer); suggestTimer = setTimeout(() => suggestTargets().catch(() => {}), 200); });
  document.getElementById("filter-book").addEventListener("change", route);
  let timer;
  document.getElementById("filter-q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(route, 250); });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  try { await refreshOverview(); } catch (error) { toast(error.message, true); return; }
  await route();
  document.body.dataset.ready = "1";
}

start();
