// Connects every <perspective-viewer data-django-perspective="..."> on the page to its Django
// websocket. One socket per URL is shared by all viewers on it; a dropped socket or a server
// restart reconnects with backoff and every viewer comes back with its last config.
//
// The bundle's URL comes from <script type="application/json" id="django-perspective-assets">
// ({% perspective_assets %} writes it), so staticfiles' hashed names and ASSETS_URL both work.
// Viewers carry their table, URL and config as JSON in the data-django-perspective attribute
// (with what the server knows: may the user edit it, what to say when the table is not there);
// each one's state is in data-perspective-state: connecting, loaded, offline or error.
//
// When a viewer cannot show its table, it says why inside its own box (an element in the
// viewer's "modal" slot, in the viewer's theme): no such table or no access (with a sign-in
// link for visitors), server offline and reconnecting, or the server's own refusal. A viewer
// of a table the user may not edit never offers the datagrid's "Edit" mode; an edit the
// server refuses is undone on screen and the reason shown.

const ASSETS_ID = "django-perspective-assets";
const CONFIG_ATTRIBUTE = "data-django-perspective";
const STATE_ATTRIBUTE = "data-perspective-state";
const STATUS_CLASS = "django-perspective-status";
const NOTICE_CLASS = "django-perspective-notice";
const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;
const EJECT_TIMEOUT_MS = 2000;
const NOTICE_MS = 8000;

// Field numbers of perspective.proto: enough of a frame's envelope to tell which edits
// (table_update requests) the server refused.
const MSG_ID = 1;
const ENTITY_ID = 2;
const TABLE_UPDATE = 33;
const SERVER_ERROR = 50;

// The datagrid's edit modes in its toolbar's order, without "EDIT": what a read-only table offers.
const READ_ONLY_MODES = ["READ_ONLY", "SELECT_ROW", "SELECT_COLUMN", "SELECT_REGION", "SELECT_ROW_TREE"];

// What a viewer says while its socket is closed, by the server's close code (README "Close codes").
const CLOSE_MESSAGES = {
    4008: "The connection could not keep up with the updates: reconnecting…",
    4401: "This page's access token is invalid or has expired: reload the page.",
    4403: "The server refused the connection: retrying…",
    4429: "Too many connections for your account: close other tabs. Retrying…",
};
const OFFLINE_MESSAGE = "The server is offline: reconnecting…";

const STYLES = `
perspective-viewer > .${STATUS_CLASS} {
    position: absolute; inset: 0; z-index: 2; box-sizing: border-box; padding: 1.5em;
    display: flex; flex-direction: column; align-items: center; justify-content: center; gap: .75em;
    text-align: center; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
    color: var(--psp--color, #161616); background: var(--psp--background-color, #fff);
}
perspective-viewer > .${STATUS_CLASS}[data-kind="offline"] {
    background: color-mix(in srgb, var(--psp--background-color, #fff) 82%, transparent);
}
perspective-viewer > .${STATUS_CLASS} p { margin: 0; max-width: 40em; }
perspective-viewer > .${STATUS_CLASS} a {
    color: inherit; padding: .3em 1em; border: 1px solid currentColor; border-radius: 4px; text-decoration: none;
}
perspective-viewer > .${NOTICE_CLASS} {
    position: absolute; left: 50%; bottom: 2.5em; z-index: 3; transform: translateX(-50%);
    max-width: 80%; box-sizing: border-box; padding: .5em 1em; border-radius: 4px;
    font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
    color: var(--psp--background-color, #fff); background: var(--psp-error--color, #ff471e);
}
`;

let wasmModule = null;
let styled = false;
const connections = new Map();
const utf8 = new TextDecoder();
// Messages of refused edits already shown in a viewer: the datagrid does not catch its own
// update's rejection, so the browser would report each one again as an uncaught error.
const shownRefusals = new Set();

/** Import the wheel's bundle once; resolve to the wasm module that holds `Client`. */
export function perspective() {
    if (!wasmModule) {
        const assets = document.getElementById(ASSETS_ID);
        if (!assets) {
            return Promise.reject(new Error(`No #${ASSETS_ID}: add {% perspective_assets %} to the page.`));
        }
        const { bundle } = JSON.parse(assets.textContent);
        wasmModule = import(new URL(bundle, document.baseURI).href).then(async (exports) => {
            if (exports.ready) {
                await exports.ready;
            }
            await customElements.whenDefined("perspective-viewer");
            return customElements.get("perspective-viewer").__wasm_module__;
        });
    }
    return wasmModule;
}

/** `ws://` or `wss://` URL for `url`, which may be a path relative to this page. */
function absoluteWebsocketURL(url) {
    const resolved = new URL(url, document.baseURI);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
}

function setState(viewer, state) {
    viewer.setAttribute(STATE_ATTRIBUTE, state);
    viewer.dispatchEvent(new CustomEvent("django-perspective-state", { detail: { state } }));
}

function installStyles() {
    if (styled) return;
    styled = true;
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLES);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

/** Say `message` ({text, link}) inside the viewer's box; `kind` null clears it. */
function showStatus(viewer, kind, message = null) {
    let box = viewer.querySelector(`:scope > .${STATUS_CLASS}`);
    if (!kind) {
        box?.remove();
        return;
    }
    installStyles();
    if (!box) {
        box = document.createElement("div");
        box.className = STATUS_CLASS;
        box.slot = "modal";
        box.setAttribute("role", "status");
        viewer.append(box);
    }
    box.dataset.kind = kind;
    box.replaceChildren(...messageNodes(message));
}

/** A short-lived note at the bottom of the viewer's box, for what does not stop the view. */
function showNotice(viewer, message) {
    installStyles();
    viewer.querySelector(`:scope > .${NOTICE_CLASS}`)?.remove();
    const note = document.createElement("div");
    note.className = NOTICE_CLASS;
    note.slot = "modal";
    note.setAttribute("role", "alert");
    note.replaceChildren(...messageNodes(message));
    viewer.append(note);
    setTimeout(() => note.remove(), NOTICE_MS);
}

function messageNodes({ text, link = null }) {
    const paragraph = document.createElement("p");
    paragraph.textContent = text;
    if (!link) return [paragraph];
    const anchor = document.createElement("a");
    anchor.href = link.href;
    anchor.textContent = link.text;
    return [paragraph, anchor];
}

/** What a viewer says when `error` stopped it from showing `entry`'s table. */
function explain(error, entry) {
    const text = String(error?.message ?? error).replace(/^Abort\(\): /, ""); // how the client wraps a server error
    if (/Unknown table/.test(text)) {
        return {
            kind: "unavailable",
            text: entry.unavailable || `There is no table “${entry.table}”, or you have no access to it.`,
            link: entry.signin ? { href: entry.signin, text: "Sign in" } : null,
        };
    }
    return { kind: "error", text: `This view cannot be shown: ${text}` };
}

function readVarint(bytes, pos) {
    let value = 0;
    let scale = 1;
    for (;;) {
        if (pos >= bytes.length) throw new RangeError("truncated varint");
        const byte = bytes[pos++];
        value += (byte & 0x7f) * scale;
        if (!(byte & 0x80)) return [value, pos];
        scale *= 128;
    }
}

/** The top-level fields of a protobuf message: number -> varint value or bytes. */
function fields(bytes) {
    const found = new Map();
    let pos = 0;
    while (pos < bytes.length) {
        let tag;
        [tag, pos] = readVarint(bytes, pos);
        const wire = tag & 7;
        let value;
        if (wire === 0) {
            [value, pos] = readVarint(bytes, pos);
        } else if (wire === 2) {
            let length;
            [length, pos] = readVarint(bytes, pos);
            value = bytes.subarray(pos, pos + length);
            pos += length;
        } else {
            break; // Perspective's envelopes hold varints and length-delimited fields only
        }
        found.set(Math.floor(tag / 8), value);
    }
    return found;
}

/** A frame's msg_id, entity_id, body field number and server error message (or null). */
function envelope(bytes) {
    const found = fields(bytes);
    const kind = [...found.keys()].find((number) => ![MSG_ID, ENTITY_ID, SERVER_ERROR].includes(number)) ?? 0;
    const error = found.get(SERVER_ERROR);
    return {
        msgId: found.get(MSG_ID) ?? 0,
        entity: found.has(ENTITY_ID) ? utf8.decode(found.get(ENTITY_ID)) : "",
        kind,
        error: error === undefined ? null : utf8.decode(fields(error).get(1) ?? new Uint8Array()),
    };
}

/** Keep a read-only viewer out of the datagrid's "Edit" mode, whatever its config says. */
function withoutEditing(config) {
    if (config?.plugin_config?.edit_mode !== "EDIT") return config;
    return { ...config, plugin_config: { ...config.plugin_config, edit_mode: "READ_ONLY" } };
}

const narrowed = new WeakSet();

/** Take "Edit" out of the datagrid's own list of edit modes (its plugin_config_schema). */
function narrowEditModes(viewer) {
    for (const plugin of viewer.querySelectorAll(":scope > perspective-viewer-datagrid")) {
        if (narrowed.has(plugin) || typeof plugin.plugin_config_schema !== "function") continue;
        narrowed.add(plugin);
        const schema = plugin.plugin_config_schema;
        plugin.plugin_config_schema = function (...args) {
            const result = schema.apply(this, args);
            const fields = (result?.fields ?? []).map((field) =>
                field.key === "edit_mode"
                    ? { ...field, variants: field.variants.filter((variant) => variant.value !== "EDIT") }
                    : field,
            );
            return { ...result, fields };
        };
    }
}

/** What the datagrid's toolbar toggle does, less "Edit": the next selection mode. */
async function nextReadOnlyMode(viewer) {
    const config = await viewer.save();
    const tree = (config.group_by?.length ?? 0) > 0 && config.group_rollup_mode !== "flat";
    let index = READ_ONLY_MODES.indexOf(config.plugin_config?.edit_mode ?? "READ_ONLY");
    do {
        index = (index + 1) % READ_ONLY_MODES.length;
    } while (READ_ONLY_MODES[index] === "SELECT_ROW_TREE" && !tree);
    await viewer.restore({ plugin_config: { edit_mode: READ_ONLY_MODES[index] } });
}

const guarded = new WeakSet();

function guardEditToggle(viewer) {
    if (guarded.has(viewer)) return;
    guarded.add(viewer);
    viewer.addEventListener(
        "click",
        (event) => {
            const path = event.composedPath();
            const toggle = path.some((node) => node.id === "edit_mode");
            if (!toggle || !path.some((node) => node.tagName === "PERSPECTIVE-VIEWER-DATAGRID-TOOLBAR")) return;
            event.stopPropagation();
            event.preventDefault();
            nextReadOnlyMode(viewer).catch((error) => console.error("perspective: edit mode:", error));
        },
        { capture: true },
    );
}

/** The user may no longer edit this viewer's table (the server said so): stop offering it. */
async function readOnly(viewer, entry) {
    entry.editable = false;
    entry.config = withoutEditing(entry.config);
    guardEditToggle(viewer);
    narrowEditModes(viewer);
    await viewer.restore({ plugin_config: { edit_mode: "READ_ONLY" } });
}

/** Draw the grid again from the table, dropping an edit that was not saved. */
async function redraw(viewer) {
    for (const plugin of viewer.querySelectorAll(":scope > perspective-viewer-datagrid")) {
        const grid = plugin.regular_table;
        if (!grid) continue;
        grid.clear(); // a plain draw keeps the cell's edited text: its data did not change
        await grid.draw({ preserve_width: true });
    }
}

/** The config as the ?config= of a link: base64url of its JSON, unpadded. */
export function encodeConfig(config) {
    let binary = "";
    for (const byte of new TextEncoder().encode(JSON.stringify(config))) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** This page's address opening `config`. */
function linkTo(config) {
    const url = new URL(window.location.href);
    url.search = "";
    url.searchParams.set("config", encodeConfig(config));
    return url.href;
}

/** One websocket and one Perspective client, shared by the viewers of one URL. */
class Connection {
    constructor(url) {
        this.url = url;
        this.viewers = new Map(); // viewer -> entry: {table, config, editable, ...}
        this.client = null;
        this.delay = MIN_DELAY_MS;
        this.edits = new Map(); // msg_id of a table_update in flight -> its table
        this.open();
    }

    async open() {
        const mod = await perspective();
        const ws = new WebSocket(this.url);
        ws.binaryType = "arraybuffer";
        const client = new mod.Client(
            async (request) => {
                if (ws.readyState !== WebSocket.OPEN) throw new Error("websocket is not open");
                this.sending(request);
                ws.send(request.slice().buffer);
            },
            async () => ws.close(),
        );
        ws.onmessage = (event) => {
            this.receiving(event.data);
            client.handle_response(event.data);
        };
        ws.onopen = () => {
            this.delay = MIN_DELAY_MS;
            this.client = client;
            for (const viewer of this.viewers.keys()) this.attach(viewer);
        };
        ws.onclose = (event) => this.lost(client, event.code);
    }

    sending(request) {
        const head = envelope(request);
        if (head.kind === TABLE_UPDATE) this.edits.set(head.msgId, head.entity);
    }

    receiving(data) {
        if (!this.edits.size) return;
        const head = envelope(new Uint8Array(data));
        const table = this.edits.get(head.msgId);
        if (table === undefined) return;
        this.edits.delete(head.msgId);
        if (head.error !== null) this.refused(table, head.error);
    }

    /** The server refused an edit of `table`: undo it on screen and say why. */
    refused(table, message) {
        shownRefusals.add(message);
        for (const [viewer, entry] of this.viewers) {
            if (entry.table !== table) continue;
            showNotice(viewer, { text: `Your edit was not saved: ${message}` });
            redraw(viewer)
                .then(() => (/is read-only/.test(message) ? readOnly(viewer, entry) : null))
                .catch(() => {});
        }
    }

    // Nothing here may wait on the viewers: a viewer call that needs the dead client would
    // never settle, and would hold the viewer's task queue against the reload.
    lost(client, code) {
        if (this.client === client) this.client = null;
        this.edits.clear();
        const text = CLOSE_MESSAGES[code] ?? OFFLINE_MESSAGE;
        for (const viewer of this.viewers.keys()) {
            setState(viewer, "offline");
            showStatus(viewer, "offline", { text });
        }
        client.handle_error(`websocket closed (${code})`, undefined).catch(() => {});
        const delay = this.delay * (0.5 + Math.random() / 2);
        this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
        setTimeout(() => this.open(), delay);
    }

    add(viewer, entry) {
        if (!entry.editable) {
            entry.config = withoutEditing(entry.config);
            guardEditToggle(viewer);
        }
        this.viewers.set(viewer, entry);
        viewer.addEventListener("perspective-config-update", () => this.changed(viewer));
        if (this.client) this.attach(viewer);
    }

    async changed(viewer) {
        const entry = this.viewers.get(viewer);
        if (!entry || viewer.getAttribute(STATE_ATTRIBUTE) !== "loaded") return;
        entry.config = await saved(viewer, entry.config);
        if (!entry.editable) {
            narrowEditModes(viewer);
            if (entry.config.plugin_config?.edit_mode === "EDIT") {
                await viewer.restore({ plugin_config: { edit_mode: "READ_ONLY" } });
                return;
            }
        }
        if (entry.link) {
            const href = linkTo(entry.config);
            window.history.replaceState(window.history.state, "", href);
            for (const anchor of document.querySelectorAll("a[data-perspective-link]")) anchor.href = href;
        }
    }

    async attach(viewer) {
        const client = this.client;
        const entry = this.viewers.get(viewer);
        setState(viewer, "connecting");
        try {
            if (entry.loadedBefore) {
                // Drop the view of the dead client first: restoring over it leaves a chart
                // plugin waiting for that client forever. Bounded, for the same reason.
                await Promise.race([viewer.eject().catch(() => {}), sleep(EJECT_TIMEOUT_MS)]);
            }
            entry.loadedBefore = true;
            await viewer.load(client);
            await viewer.restore({ ...entry.config, table: entry.table });
            if (this.client === client) {
                if (!entry.editable) narrowEditModes(viewer);
                showStatus(viewer, null);
                setState(viewer, "loaded");
            }
        } catch (error) {
            if (this.client === client) {
                const { kind, ...message } = explain(error, entry);
                showStatus(viewer, kind, message);
                setState(viewer, "error");
                console.warn(`perspective: cannot show table ${JSON.stringify(entry.table)}:`, error);
            }
        }
    }
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The viewer's config now, or `fallback` when it cannot say (its client is gone). */
async function saved(viewer, fallback) {
    try {
        const { table, ...config } = await viewer.save();
        return config;
    } catch {
        return fallback;
    }
}

/** The shared connection for `url`, opened on first use. */
export function connect(url) {
    const absolute = absoluteWebsocketURL(url);
    if (!connections.has(absolute)) connections.set(absolute, new Connection(absolute));
    return connections.get(absolute);
}

/** Show `table` in `viewer` through the shared connection to `url`, restoring `config`.
 *
 * `editable`: whether the user may edit the table (else the datagrid offers no "Edit");
 * `unavailable`, `signin`: what to say, and where to sign in, when the table is refused;
 * `error`: a reason the server already knows the view cannot be shown; `link`: keep the
 * page's address (and any `a[data-perspective-link]`) on the viewer's current config.
 */
export function mount(viewer, { url, table, config = {}, editable = false, unavailable = "", signin = null, error = null, link = false }) {
    if (viewer.hasAttribute(STATE_ATTRIBUTE)) return;
    if (error) {
        showStatus(viewer, "error", { text: error });
        setState(viewer, "error");
        return;
    }
    setState(viewer, "connecting");
    connect(url).add(viewer, { table, config, editable, unavailable, signin, link });
}

/** Before a `form[data-perspective-save="#viewer"]` is sent, put that viewer's config in its `config` field. */
function bindSaveForm(form) {
    if (form.dataset.perspectiveBound) return;
    form.dataset.perspectiveBound = "1";
    form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const viewer = document.querySelector(form.dataset.perspectiveSave);
        const config = viewer ? await saved(viewer, null) : null;
        if (config === null) {
            if (viewer) showNotice(viewer, { text: "This view cannot be saved while it is not shown." });
            return;
        }
        form.elements.namedItem("config").value = JSON.stringify(config);
        form.submit();
    });
}

/** Mount every tagged viewer under `root` (call again after inserting HTML, e.g. with htmx). */
export function mountAll(root = document) {
    for (const viewer of root.querySelectorAll(`perspective-viewer[${CONFIG_ATTRIBUTE}]`)) {
        mount(viewer, JSON.parse(viewer.getAttribute(CONFIG_ATTRIBUTE)));
    }
    for (const form of root.querySelectorAll("form[data-perspective-save]")) bindSaveForm(form);
}

window.addEventListener("unhandledrejection", (event) => {
    const message = String(event.reason?.message ?? event.reason);
    const shown = [...shownRefusals].find((refusal) => message.endsWith(refusal)); // "Abort(): <refusal>"
    if (shown !== undefined) {
        shownRefusals.delete(shown);
        event.preventDefault();
    }
});

mountAll();
