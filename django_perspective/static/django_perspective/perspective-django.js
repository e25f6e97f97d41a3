// Connects every <perspective-viewer data-django-perspective="..."> on the page to its Django
// websocket. One socket per URL is shared by all viewers on it; a dropped socket or a server
// restart reconnects with backoff and every viewer comes back with its last config.
//
// The bundle's URL comes from <script type="application/json" id="django-perspective-assets">
// ({% perspective_assets %} writes it), so staticfiles' hashed names and ASSETS_URL both work.
// Viewers carry their table, URL and config as JSON in the data-django-perspective attribute;
// each one's state is in data-perspective-state: connecting, loaded or offline.

const ASSETS_ID = "django-perspective-assets";
const CONFIG_ATTRIBUTE = "data-django-perspective";
const STATE_ATTRIBUTE = "data-perspective-state";
const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;
const EJECT_TIMEOUT_MS = 2000;

let wasmModule = null;
const connections = new Map();

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

/** One websocket and one Perspective client, shared by the viewers of one URL. */
class Connection {
    constructor(url) {
        this.url = url;
        this.viewers = new Map(); // viewer -> {table, config}
        this.client = null;
        this.delay = MIN_DELAY_MS;
        this.open();
    }

    async open() {
        const mod = await perspective();
        const ws = new WebSocket(this.url);
        ws.binaryType = "arraybuffer";
        const client = new mod.Client(
            async (request) => {
                if (ws.readyState !== WebSocket.OPEN) throw new Error("websocket is not open");
                ws.send(request.slice().buffer);
            },
            async () => ws.close(),
        );
        ws.onmessage = (event) => client.handle_response(event.data);
        ws.onopen = () => {
            this.delay = MIN_DELAY_MS;
            this.client = client;
            for (const viewer of this.viewers.keys()) this.attach(viewer);
        };
        ws.onclose = (event) => this.lost(client, event.code);
    }

    // Nothing here may wait on the viewers: a viewer call that needs the dead client would
    // never settle, and would hold the viewer's task queue against the reload.
    lost(client, code) {
        if (this.client === client) this.client = null;
        for (const viewer of this.viewers.keys()) setState(viewer, "offline");
        client.handle_error(`websocket closed (${code})`, undefined).catch(() => {});
        const delay = this.delay * (0.5 + Math.random() / 2);
        this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
        setTimeout(() => this.open(), delay);
    }

    add(viewer, table, config) {
        this.viewers.set(viewer, { table, config });
        viewer.addEventListener("perspective-config-update", async () => {
            const entry = this.viewers.get(viewer);
            if (entry && viewer.getAttribute(STATE_ATTRIBUTE) === "loaded") {
                entry.config = await saved(viewer, entry.config);
            }
        });
        if (this.client) this.attach(viewer);
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
            if (this.client === client) setState(viewer, "loaded");
        } catch (error) {
            if (this.client === client) {
                setState(viewer, "error");
                console.error(`perspective: cannot show table ${JSON.stringify(entry.table)}:`, error);
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

/** Show `table` in `viewer` through the shared connection to `url`, restoring `config`. */
export function mount(viewer, { url, table, config = {} }) {
    if (viewer.hasAttribute(STATE_ATTRIBUTE)) return;
    setState(viewer, "connecting");
    connect(url).add(viewer, table, config);
}

/** Mount every tagged viewer under `root` (call again after inserting HTML, e.g. with htmx). */
export function mountAll(root = document) {
    for (const viewer of root.querySelectorAll(`perspective-viewer[${CONFIG_ATTRIBUTE}]`)) {
        mount(viewer, JSON.parse(viewer.getAttribute(CONFIG_ATTRIBUTE)));
    }
}

mountAll();
