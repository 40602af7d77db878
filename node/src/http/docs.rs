//! The OpenAPI document, and a page to browse it that needs nothing from
//! outside the node (no script or style from the network).

use super::{Http, Refusals};
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The OpenAPI 3.1 document of every route this node serves.
#[utoipa::path(
    get, path = "/api/docs/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object), Refusals)
)]
pub async fn document(State(http): State<Http>) -> impl IntoResponse {
    let text = http.document.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], text)
}

/// The document as a page to read in a browser.
#[utoipa::path(
    get, path = "/api/docs", tag = "docs",
    responses((status = 200, description = "A page to browse the document", content_type = "text/html", body = String), Refusals)
)]
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ledger HTTP API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}code,pre{font:13px ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow:auto}
.m{display:inline-block;width:4.2rem;font-weight:bold}.get{color:#06c}.post{color:#080}.put{color:#a60}
</style></head><body>
<h1>ledger HTTP API</h1><p id="about"></p>
<p>The machine-readable document: <a href="/api/docs/openapi.json">/api/docs/openapi.json</a></p>
<div id="ops">loading…</div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const show = v => "<pre>" + esc(JSON.stringify(v, null, 2)) + "</pre>";
fetch("/api/docs/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("about").textContent = doc.info.description || "";
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item))
      (byTag[(op.tags || ["other"])[0]] ??= []).push([method, path, op]);
  let html = "";
  for (const tag of doc.tags || []) {
    html += `<h2>${esc(tag.name)}</h2><p>${esc(tag.description)}</p>`;
    for (const [method, path, op] of byTag[tag.name] || []) {
      html += `<details><summary><span class="m ${method}">${method.toUpperCase()}</span><code>${esc(path)}</code> — ${esc(op.summary)}</summary>`;
      html += `<p>${esc(op.description)}</p>`;
      if (op.parameters) html += "<h4>Parameters</h4>" + show(op.parameters);
      if (op.requestBody) html += "<h4>Body</h4>" + show(op.requestBody);
      html += "<h4>Answers</h4>" + show(op.responses) + "</details>";
    }
  }
  html += "<h2>Schemas</h2>";
  for (const [name, schema] of Object.entries(doc.components?.schemas || {}))
    html += `<details><summary><code>${esc(name)}</code></summary>${show(schema)}</details>`;
  document.getElementById("ops").innerHTML = html;
}).catch(e => { document.getElementById("ops").textContent = "cannot load the document: " + e; });
</script></body></html>
"#;
