// EG3D viewer page: keeps the view settings, asks the server for frames, and shows them.
//
// Every change asks for a cheap preview at once and for the full-quality frame once the settings have been still
// for REFINE_DELAY_MS. The server renders only the newest request, so answers may come back "superseded"; frames
// older than the one on screen are dropped. The page's state is mirrored in <body data-*> and the title, so a
// headless browser can tell when a full frame is shown.
'use strict';

const REFINE_DELAY_MS = 250;
const RECENT_KEY = 'eg3d-viewer-recent-networks';
const RECENT_MAX = 10;
const DEG_PER_PIXEL = 0.3;

// Settings sent with every frame request, with their kinds (for the URL query and the form).
const FIELDS = {
  network: 'text', seed: 'int', seed2: 'int', mix: 'real', psi: 'real', cutoff: 'int', yaw: 'real', pitch: 'real',
  distance: 'real', fov: 'real', conditioning: 'text', output: 'text', neural_rendering_resolution: 'int',
  depth_resolution: 'int', depth_resolution_importance: 'int',
};
const CAMERA_DEFAULTS = { yaw: 0, pitch: 0, distance: 1 };

// The server's secret for this run comes in the page's URL; every API call presents it.
const TOKEN = new URLSearchParams(window.location.search).get('token');
const AUTH = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
const JSON_POST = { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json' } };

const form = document.getElementById('controls');
const frame = document.getElementById('frame');
const frameTime = document.getElementById('frame-time');
const errorBox = document.getElementById('error');

let latestSeq = 0;      // Sequence number of the newest request sent.
let shownSeq = 0;       // ... and of the frame on screen.
let refineTimer = null;

function parseValue(kind, text) {
  if (text === '' || text === null || text === undefined) return null;
  if (kind === 'int') return Number.parseInt(text, 10);
  if (kind === 'real') return Number.parseFloat(text);
  return String(text);
}

function settings() {
  const result = {};
  for (const [name, kind] of Object.entries(FIELDS)) {
    const value = parseValue(kind, form.elements[name].value);
    if (value !== null && !Number.isNaN(value)) result[name] = value;
  }
  return result;
}

function setField(name, value) {
  form.elements[name].value = value;
  showRangeValue(form.elements[name]);
}

function showRangeValue(input) {
  const out = form.querySelector(`output[for="${input.name}"]`);
  if (out) out.textContent = input.value;
}

// ---------------------------------------------------------------------------
// Recent networks (browser storage) and the server's list.

function recentNetworks() {
  try { return JSON.parse(localStorage.getItem(RECENT_KEY)) || []; } catch (err) { return []; }
}

let serverNetworks = [];  // From --network, PKL arguments and --browse-dir.

function rememberNetwork(name) {
  const list = [name, ...recentNetworks().filter((n) => n !== name)].slice(0, RECENT_MAX);
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(list)); } catch (err) { /* storage disabled */ }
  fillNetworkList();
}

function fillNetworkList() {
  const names = [...new Set([...recentNetworks(), ...serverNetworks])];
  document.getElementById('recent-networks').replaceChildren(
    ...names.map((name) => Object.assign(document.createElement('option'), { value: name })));
}

// ---------------------------------------------------------------------------
// Frames.

function setPageState(state, detail) {
  document.body.dataset.state = state;
  document.title = `EG3D viewer - ${detail}`;
}

async function requestFrame(quality) {
  const seq = ++latestSeq;
  const request = { ...settings(), quality, seq };
  if (!request.network) { setPageState('idle', 'choose a network'); return; }
  setPageState('rendering', `rendering ${quality}`);
  const started = performance.now();
  let answer;
  try {
    const response = await fetch('api/render', { ...JSON_POST, body: JSON.stringify(request) });
    answer = await response.json();
  } catch (err) {
    answer = { status: 'error', message: `no answer from the server (${err})`, seq };
  }
  if (answer.status === 'superseded' || seq < shownSeq) return;
  if (answer.status === 'error') {
    errorBox.textContent = answer.message;
    if (seq === latestSeq) setPageState('error', 'error');
    return;
  }
  showFrame(answer, request, performance.now() - started);
}

function showFrame(answer, request, roundTripMs) {
  shownSeq = answer.seq;
  errorBox.textContent = '';
  frame.src = answer.image;
  frame.classList.toggle('pixelated', answer.output !== 'image');
  const s = answer.settings;
  const t = answer.timing;
  frameTime.textContent = `${answer.quality} ${answer.width}x${answer.height}: ${t.total_ms.toFixed(0)} ms render `
    + `(planes ${answer.planes_reused ? 'cached' : t.planes_ms.toFixed(0) + ' ms'}, `
    + `rendering ${t.render_ms.toFixed(0)} ms), ${roundTripMs.toFixed(0)} ms round trip; `
    + `${s.neural_rendering_resolution} px, ${s.depth_resolution}+${s.depth_resolution_importance} samples`
    + (s.super_resolution ? '' : ', no super-resolution');
  applyNetworkDefaults(answer.network);
  if (request.network !== recentNetworks()[0]) rememberNetwork(request.network);  // only networks that loaded
  const body = document.body.dataset;
  Object.assign(body, { seq: answer.seq, seed: request.seed ?? 0, quality: answer.quality, output: answer.output,
                        width: answer.width, height: answer.height, renderMs: t.total_ms.toFixed(1) });
  const ready = answer.quality === 'full' && answer.seq === latestSeq;
  setPageState(ready ? 'ready' : 'refining', `seed ${request.seed ?? 0} ${answer.quality}`);
}

function applyNetworkDefaults(info) {
  // Empty fields mean "the network's own value"; show it as the placeholder.
  for (const name of ['neural_rendering_resolution', 'depth_resolution', 'depth_resolution_importance', 'fov']) {
    form.elements[name].placeholder = String(info[name]);
  }
  form.elements.cutoff.max = String(info.num_ws);
}

function changed() {
  requestFrame('preview');
  clearTimeout(refineTimer);
  refineTimer = setTimeout(() => requestFrame('full'), REFINE_DELAY_MS);
}

// ---------------------------------------------------------------------------
// Camera by dragging (orbit) and the wheel (zoom).

function setupCameraDrag() {
  let last = null;
  frame.addEventListener('pointerdown', (event) => {
    last = { x: event.clientX, y: event.clientY };
    frame.setPointerCapture(event.pointerId);
    frame.classList.add('dragging');
  });
  frame.addEventListener('pointermove', (event) => {
    if (!last) return;
    const yaw = Number(form.elements.yaw.value) - (event.clientX - last.x) * DEG_PER_PIXEL;
    const pitch = Number(form.elements.pitch.value) + (event.clientY - last.y) * DEG_PER_PIXEL;
    last = { x: event.clientX, y: event.clientY };
    setField('yaw', (((yaw + 180) % 360) + 360) % 360 - 180);
    setField('pitch', Math.max(-89, Math.min(89, pitch)));
    changed();
  });
  const release = () => { last = null; frame.classList.remove('dragging'); };
  frame.addEventListener('pointerup', release);
  frame.addEventListener('pointercancel', release);
  frame.addEventListener('wheel', (event) => {
    event.preventDefault();
    const distance = Number(form.elements.distance.value) * Math.exp(event.deltaY * 0.001);
    setField('distance', Math.max(0.3, Math.min(4, distance)).toFixed(2));
    changed();
  }, { passive: false });
  frame.addEventListener('dblclick', resetCamera);
}

function resetCamera() {
  for (const [name, value] of Object.entries(CAMERA_DEFAULTS)) setField(name, value);
  changed();
}

// ---------------------------------------------------------------------------
// Saving.

function download(href, filename) {
  const link = Object.assign(document.createElement('a'), { href, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

function savePng() {
  if (!frame.src) return;
  const s = settings();
  download(frame.src, `seed${String(s.seed ?? 0).padStart(4, '0')}-${s.output || 'image'}.png`);
}

async function saveMesh() {
  const button = document.getElementById('save-mesh');
  button.disabled = true;
  errorBox.textContent = '';
  try {
    const request = { ...settings(), shape_res: Number(form.elements.shape_res.value),
                      level: Number(form.elements.level.value), format: form.elements.mesh_format.value };
    const response = await fetch('api/mesh', { ...JSON_POST, body: JSON.stringify(request) });
    if (!response.ok) throw new Error((await response.json()).message);
    const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await response.blob());
    download(url, name ? name[1] : `shape${request.format}`);
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    errorBox.textContent = `mesh export failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Start: server config, then the URL query (e.g. ?seed=1&output=depth) over the form's defaults.

async function start() {
  let config = { networks: [], network: null };
  try {
    const response = await fetch('api/config', { headers: AUTH });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.message);
    config = answer;
  } catch (err) { errorBox.textContent = String(err); }
  serverNetworks = config.networks;
  fillNetworkList();
  const query = new URLSearchParams(window.location.search);
  const network = query.get('network') || config.network || recentNetworks()[0] || '';
  setField('network', network);
  for (const name of Object.keys(FIELDS)) {
    if (name !== 'network' && query.has(name)) setField(name, query.get(name));
  }
  for (const input of form.querySelectorAll('input[type=range]')) showRangeValue(input);

  form.addEventListener('input', (event) => {
    showRangeValue(event.target);
    if (event.target.name in FIELDS && event.target.name !== 'network') changed();
  });
  form.elements.network.addEventListener('change', loadNetwork);
  document.getElementById('load').addEventListener('click', loadNetwork);
  document.getElementById('reset-camera').addEventListener('click', resetCamera);
  document.getElementById('save-png').addEventListener('click', savePng);
  document.getElementById('save-mesh').addEventListener('click', saveMesh);
  setupCameraDrag();
  changed();
}

function loadNetwork() {
  const name = form.elements.network.value.trim();
  if (!name) return;
  for (const field of ['neural_rendering_resolution', 'depth_resolution', 'depth_resolution_importance', 'fov']) {
    setField(field, '');
  }
  changed();
}

start();
