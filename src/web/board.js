"use strict";
// The story board: lists live stories from /api/stories and shows a story's
// headlines from /api/stories/{id} on click. Text is inserted with
// textContent only. "#story=ID" in the address opens that story.

const REFRESH_MS = 5000;
const open = new Set();
const params = new URLSearchParams(location.search);
const hashStory = new URLSearchParams(location.hash.slice(1)).get("story");
if (hashStory) open.add(hashStory);

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function when(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 16) + "Z";
}

function chart(bins) {
  const width = 96, height = 20, max = Math.max(1, ...bins), step = width / bins.length;
  const svg = svgEl("svg", { class: "arrivals", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `arrivals: ${bins.join(" ")}` });
  bins.forEach((count, i) => {
    if (count === 0) return;
    const h = Math.max(1, (count / max) * height);
    svg.append(svgEl("rect", { x: i * step, y: height - h, width: Math.max(1, step - 1), height: h }));
  });
  return svg;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function namespace() {
  return $("namespace").value || "default";
}

async function loadNamespaces() {
  const names = await getJSON("/api/namespaces");
  const select = $("namespace");
  const wanted = params.get("namespace") || select.value || names[0] || "default";
  select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  if (!names.includes(wanted)) select.append(el("option", { value: wanted }, wanted));
  select.value = wanted;
}

function membersRow(story) {
  const row = el("tr", { class: "members", "data-story": story.id });
  const cell = el("td", { colspan: 6 }, "Loading…");
  row.append(cell);
  getJSON(`/api/stories/${encodeURIComponent(story.id)}?namespace=${encodeURIComponent(namespace())}`)
    .then((detail) => {
      const list = el("ol");
      for (const m of detail.members) {
        const kind = m.kind.replaceAll("_", " ");
        const meta = [m.source, when(m.published), kind, m.similarity ? m.similarity.toFixed(2) : null]
          .filter(Boolean).join(" · ");
        list.append(el("li", { "data-headline": m.id }, el("span", { class: "text" }, m.text), " ",
          el("span", { class: "meta" }, meta)));
      }
      cell.replaceChildren(list);
    })
    .catch((error) => cell.replaceChildren(`Could not load the headlines: ${error.message}`));
  return row;
}

function storyRow(story) {
  const sources = story.sources.slice(0, 3).map((s) => `${s.name} (${s.count})`).join(", ")
    + (story.sources.length > 3 ? `, +${story.sources.length - 3}` : "");
  const row = el("tr", { class: "story", "data-story": story.id, tabindex: 0,
      "aria-expanded": String(open.has(story.id)) },
    el("td", { class: "canonical" }, story.canonical_text),
    el("td", { class: "num" }, String(story.size)),
    el("td", { class: "sources" }, sources),
    el("td", { class: "when" }, when(story.first_seen)),
    el("td", { class: "when" }, when(story.last_seen)),
    el("td", {}, chart(story.arrivals)));
  const toggle = () => {
    if (open.has(story.id)) open.delete(story.id); else open.add(story.id);
    refresh();
  };
  row.addEventListener("click", toggle);
  row.addEventListener("keydown", (event) => { if (event.key === "Enter") toggle(); });
  return row;
}

let loading = false;
async function refresh() {
  if (loading) return;
  loading = true;
  try {
    const stories = await getJSON(
      `/api/stories?namespace=${encodeURIComponent(namespace())}&order=${$("order").value}&limit=100`);
    const rows = [];
    for (const story of stories) {
      rows.push(storyRow(story));
      if (open.has(story.id)) rows.push(membersRow(story));
    }
    document.querySelector("#stories tbody").replaceChildren(...rows);
    $("empty").hidden = stories.length > 0;
    $("status").textContent = `${stories.length} stories · updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = `Could not load stories: ${error.message}`;
  } finally {
    loading = false;
  }
}

async function start() {
  try {
    await loadNamespaces();
  } catch (error) {
    $("status").textContent = `Could not load namespaces: ${error.message}`;
  }
  if (params.get("order")) $("order").value = params.get("order");
  $("namespace").addEventListener("change", () => { open.clear(); refresh(); });
  $("order").addEventListener("change", refresh);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
