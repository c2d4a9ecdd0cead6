// memagent web: the chat, the thread list and the branch tree, over the JSON API in
// agent/web.py. Plain browser JavaScript, no build step, nothing loaded from the internet.
// User text is only ever set with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "memagent-token";
const view = { thread: null, busy: false, detail: null };
const $ = (id) => document.getElementById(id);

// --- talking to the API ------------------------------------------------------------

class ApiError extends Error {}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function failure(response) {
  let message = `The server answered ${response.status}.`;
  try {
    message = (await response.json()).error || message;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) $("signin").hidden = false;
  return new ApiError(message);
}

// Every call that changes something sends a JSON body: the server refuses any other
// type there, since only JSON needs the CORS preflight another site cannot pass.
async function api(method, path, body) {
  const changes = method !== "GET";
  const init = { method, headers: headers(changes ? { "Content-Type": "application/json" } : {}) };
  if (changes) init.body = JSON.stringify(body || {});
  let response;
  try {
    response = await fetch(path, init);
  } catch (_) {
    throw new ApiError("The memagent server cannot be reached. Is it still running?");
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Sends a message and hands each streamed part of the reply to onPart.
async function streamReply(thread, text, onPart) {
  let response;
  try {
    response = await fetch("api/chat", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ thread, text }),
    });
  } catch (_) {
    throw new ApiError("The memagent server cannot be reached. Is it still running?");
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let done = false;
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) break;
    pending += chunk.value;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line);
      if (event.error) throw new ApiError(event.error);
      if (event.text) onPart(event.text);
      if (event.done) done = true;
    }
  }
  if (!done) throw new ApiError("The reply was cut off; send the message again to finish it.");
}

// --- errors --------------------------------------------------------------------------

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// Runs a user action: one at a time, errors shown in the page.
async function act(work) {
  if (view.busy) return;
  view.busy = true;
  document.body.classList.add("busy");
  clearError();
  try {
    await work();
  } catch (error) {
    showError(error instanceof ApiError ? error.message : `Unexpected error: ${error.message}`);
  } finally {
    view.busy = false;
    document.body.classList.remove("busy");
  }
}

// --- drawing -------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function shortId(id) {
  return id.length > 18 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

function renderThreads(threads) {
  const list = $("threads");
  list.replaceChildren();
  if (!threads.length) list.append(el("li", "muted", "No threads yet."));
  for (const thread of threads) {
    const item = el("li");
    const button = el("button", thread.thread_id === view.thread ? "thread current" : "thread");
    button.type = "button";
    button.title = thread.thread_id;
    button.append(el("span", "thread-id", shortId(thread.thread_id)));
    button.append(el("span", "muted", `${clock(thread.last_activity)} · ${thread.checkpoints} checkpoints`));
    button.addEventListener("click", () => act(() => openThread(thread.thread_id)));
    item.append(button);
    list.append(item);
  }
}

function addMessage(role, text) {
  const item = el("li", `message ${role}`);
  item.append(el("span", "who", { user: "you", summary: "summary" }[role] || "agent"));
  const body = el("div", "text", text);
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return body;
}

function renderMessages(messages) {
  $("messages").replaceChildren();
  if (!messages.length) {
    $("messages").append(el("li", "empty muted", "The agent remembers nothing of this thread. Say something!"));
  }
  for (const message of messages) addMessage(message.role, message.text);
}

// The tree as memagent timeline draws it: a straight run of points stays in one
// column; where a point has several continuations (a rewind), each is a branch.
function renderTree(tree) {
  const box = $("tree");
  box.replaceChildren();
  if (!tree || !tree.entries.length) {
    box.append(el("p", "muted", "No turns yet."));
    return;
  }
  if (tree.hidden) box.append(el("p", "muted", `… ${tree.hidden} older points not shown`));
  const oldestFirst = [...tree.entries].reverse();
  const children = new Map();
  for (const node of oldestFirst) {
    const key = node.tree_parent ?? null;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(node);
  }
  const turns = new Map(tree.entries.filter((n) => n.kind === "turn").map((n) => [n.checkpoint_id, n.preview]));
  const current = tree.entries.find((n) => n.on_head_branch);

  const run = (first) => {
    const list = el("ol", "run");
    let node = first;
    for (;;) {
      const item = el("li", "point");
      item.append(pointRow(node, node === current, turns));
      list.append(item);
      const kids = children.get(node.checkpoint_id) || [];
      if (kids.length === 1) {
        node = kids[0];
        continue;
      }
      if (kids.length > 1) {
        const forks = el("div", "forks");
        for (const kid of kids) {
          const branch = el("div", kid.on_head_branch ? "branch on-head" : "branch");
          branch.append(run(kid));
          forks.append(branch);
        }
        item.append(forks);
      }
      return list;
    }
  };
  for (const root of children.get(null) || []) box.append(run(root));
}

function pointRow(node, isCurrent, turns) {
  const row = el("div", `row ${node.kind}${node.on_head_branch ? " on-head" : " set-aside"}${isCurrent ? " current" : ""}`);
  row.dataset.checkpoint = node.checkpoint_id;
  row.dataset.kind = node.kind;
  // The symbol and the label come from the API (the registry of memory event kinds),
  // so a new kind of change shows here without a change to this page.
  const target = el("button", "go", "");
  target.type = "button";
  target.append(el("span", "icon", node.symbol));
  if (node.removed) {
    // A tombstone: retention removed the change's checkpoint, so it only says it happened.
    row.classList.add("removed");
    target.disabled = true;
    target.title = "Removed by retention: this point can no longer be returned to";
    target.append(el("span", "label", node.label));
    row.append(target);
    row.append(el("time", "muted", node.at ? new Date(node.at).toLocaleTimeString() : ""));
    return row;
  }
  let label = node.label;
  if (node.kind === "turn") {
    label = `“${node.preview}”`;
    target.title = "Go back to just before this message";
  } else if (node.rewound_to) {
    // A turn's point is the state just before its message; a later point of that
    // turn's step is after it.
    if (turns.has(node.rewound_to)) label = `went back to before “${turns.get(node.rewound_to)}”`;
    else if (turns.has(node.tree_parent)) label = `went back to after “${turns.get(node.tree_parent)}”`;
    else label = "went back";
    target.title = "Go to just after this rewind";
  } else {
    target.title = `Go to just after this (${node.label})`;
  }
  target.append(el("span", "label", label));
  target.addEventListener("click", () => act(() => rewindTo(node.checkpoint_id)));
  row.append(target);
  if (node.kind === "compact") {
    // The summary itself is content, so the tree does not carry it: fetched on demand.
    const show = el("button", "small", "summary");
    show.type = "button";
    show.title = "Show the summary this compaction made";
    const text = el("div", "summary-text muted", "");
    text.hidden = true;
    show.addEventListener("click", () => act(async () => {
      if (text.hidden && !text.textContent) {
        const query = `thread=${encodeURIComponent(view.thread)}&checkpoint=${encodeURIComponent(node.checkpoint_id)}`;
        text.textContent = (await api("GET", `api/summary?${query}`)).text;
      }
      text.hidden = !text.hidden;
    }));
    row.append(show);
    row.append(text);
  }
  if (node.undo) {
    const undo = el("button", "small", "undo");
    undo.type = "button";
    undo.title = "Take this change back: go to just before it";
    undo.addEventListener("click", () => act(() => rewindTo(node.undo)));
    row.append(undo);
  }
  row.append(el("time", "muted", node.at ? new Date(node.at).toLocaleTimeString() : ""));
  if (isCurrent) row.append(el("span", "badge", "now"));
  return row;
}

// --- actions -------------------------------------------------------------------------

async function refresh() {
  const [threads, conversation] = await Promise.all([
    api("GET", "api/threads"),
    view.thread ? api("GET", `api/conversation?thread=${encodeURIComponent(view.thread)}`) : null,
  ]);
  renderThreads(threads.threads);
  if (conversation) {
    renderMessages(conversation.messages);
    renderTree(conversation.tree);
  }
}

async function openThread(thread) {
  view.thread = thread;
  location.hash = `thread=${encodeURIComponent(thread)}`;
  $("thread-title").textContent = `Thread ${shortId(thread)}`;
  $("thread-title").title = thread;
  await refresh();
}

async function newThread() {
  const created = await api("POST", "api/threads");
  await openThread(created.thread_id);
}

async function send() {
  const text = $("text").value;
  if (!text.trim()) return;
  if (!view.thread) await newThread();
  $("messages").querySelector(".empty")?.remove();
  addMessage("user", text);
  $("text").value = "";
  const reply = addMessage("agent", "");
  reply.parentElement.classList.add("streaming");
  try {
    await streamReply(view.thread, text, (part) => {
      reply.textContent += part;
      reply.parentElement.scrollIntoView({ block: "end" });
    });
  } catch (error) {
    if (!reply.textContent) $("text").value = text; // nothing was answered: keep the message
    throw error;
  } finally {
    reply.parentElement.classList.remove("streaming");
    await refresh().catch(() => {});
  }
}

async function forget() {
  if (!view.thread) throw new ApiError("Nothing to forget yet: this thread is empty.");
  await api("POST", "api/forget", { thread: view.thread, reason: "asked in the web page" });
  await refresh();
}

async function compact() {
  if (!view.thread) throw new ApiError("Nothing to compact yet: this thread is empty.");
  await api("POST", "api/compact", { thread: view.thread });
  await refresh();
}

async function undo() {
  if (!view.thread) throw new ApiError("Nothing to undo yet.");
  await api("POST", "api/undo", { thread: view.thread });
  await refresh();
}

async function deleteThread() {
  if (!view.thread) throw new ApiError("Nothing to delete: no thread is open.");
  const question = `Delete thread ${shortId(view.thread)} for good? Every message, checkpoint and branch of it is erased; this cannot be undone.`;
  if (!window.confirm(question)) return;
  await api("POST", "api/delete", { thread: view.thread });
  view.thread = null;
  location.hash = "";
  $("thread-title").textContent = "New thread";
  $("thread-title").title = "";
  renderMessages([]);
  renderTree(null);
  await refresh();
}

async function rewindTo(checkpointId) {
  await api("POST", "api/rewind", { thread: view.thread, checkpoint_id: checkpointId });
  await refresh();
}

// --- forgetting a selected detail ------------------------------------------------------

// The text selected inside one message bubble, with where it is on screen; null when
// nothing (or text across several messages, or outside the chat) is selected.
function selectedDetail() {
  const selection = window.getSelection();
  if (!selection || selection.isCollapsed || !selection.rangeCount) return null;
  const range = selection.getRangeAt(0);
  const start = range.startContainer.parentElement?.closest("#messages .message .text");
  const end = range.endContainer.parentElement?.closest("#messages .message .text");
  const quote = selection.toString().trim();
  if (!start || start !== end || !quote) return null;
  return { quote, rect: range.getBoundingClientRect() };
}

// Shows the two buttons just below the selection, or hides them when there is none.
function updateDetailActions() {
  const bar = $("detail-actions");
  const detail = selectedDetail();
  view.detail = detail ? detail.quote : null;
  if (!detail || !view.thread) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  const left = Math.min(detail.rect.left, window.innerWidth - bar.offsetWidth - 8);
  const below = detail.rect.bottom + 6;
  const top = below + bar.offsetHeight > window.innerHeight ? detail.rect.top - bar.offsetHeight - 6 : below;
  bar.style.left = `${Math.max(8, left)}px`;
  bar.style.top = `${Math.max(8, top)}px`;
}

function dropSelection() {
  window.getSelection()?.removeAllRanges();
  $("detail-actions").hidden = true;
}

async function forgetDetail(quote) {
  dropSelection();
  await api("POST", "api/forget-detail", { thread: view.thread, quote });
  await refresh();
}

// Asks in the page before anything is erased; resolves true only on an explicit yes.
function confirmErase(quote) {
  const dialog = $("erase-dialog");
  $("erase-quote").textContent = quote;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

async function eraseDetail(quote) {
  dropSelection();
  if (!(await confirmErase(quote))) return;
  await act(async () => {
    await api("POST", "api/erase", { thread: view.thread, quote });
    await refresh();
  });
}

async function loadInfo() {
  const info = await api("GET", "api/info");
  const who = info.user ? ` · signed in as ${info.user}` : "";
  $("info").textContent = `model: ${info.model} · database: ${info.database}${who}`;
  $("signin").hidden = true;
}

async function start() {
  await loadInfo();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("thread");
  if (fromHash) await openThread(fromHash);
  else await refresh();
}

// --- wiring --------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  act(send);
});
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    act(send);
  }
});
$("new-thread").addEventListener("click", () => act(newThread));
$("forget").addEventListener("click", () => act(forget));
$("compact").addEventListener("click", () => act(compact));
$("undo").addEventListener("click", () => act(undo));
$("delete-thread").addEventListener("click", () => act(deleteThread));
$("error-close").addEventListener("click", clearError);
$("messages").addEventListener("mouseup", updateDetailActions);
$("messages").addEventListener("keyup", updateDetailActions);
document.addEventListener("selectionchange", () => {
  if (!selectedDetail()) $("detail-actions").hidden = true;
});
// Pressing a button must not drop the selection it acts on.
$("detail-actions").addEventListener("mousedown", (event) => event.preventDefault());
$("forget-detail").addEventListener("click", () => {
  const quote = view.detail;
  if (quote) act(() => forgetDetail(quote));
});
$("erase-detail").addEventListener("click", () => {
  const quote = view.detail;
  if (quote && !view.busy) eraseDetail(quote);
});
$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  act(start);
});

act(start);
