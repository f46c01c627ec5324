// The keyhost console: plain DOM calls, no framework, nothing from outside.
//
// Rules this file keeps:
// - the access token lives in the variable `token` below and nowhere else:
//   not in web storage, cookies, the URL or the page; logging out or
//   reloading forgets it;
// - everything the API says (names, descriptions, ids, messages) enters the
//   page as text nodes or textContent, never parsed as HTML;
// - a secret is shown once, in a dialog that is removed from the page, and
//   its variable dropped, when it is closed.

const SVG = 'http://www.w3.org/2000/svg';
const GRANT = 'urn:ibm:params:oauth:grant-type:apikey';
const SOON = 7 * 24 * 3600 * 1000;
// Relative to the page, so that the console also works behind a path prefix.
const BASE = new URL('../', document.baseURI);

let token = null;
let tokenTimer = null;
// The id of the key this session logged in with, from the token's claims.
let sessionKeyId = null;
// Counts logins and logouts: an answer to a request made in an earlier
// session is dropped, never shown in this one.
let session = 0;
let me = null;
let keys = [];
/** The ids of the keys the inactive report lists. */
let inactive = new Set();
let selectedId = null;
// Each render of the details panel gets a number; slow answers for an
// older one are dropped.
let detailsRender = 0;

const byId = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, likewise. */
function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Shows a message in the live region; `kind` is info, success or error. */
function say(text, kind = 'info') {
  const region = byId('messages');
  region.replaceChildren(el('p', { class: `message message-${kind}` },
    kind === 'error' ? el('strong', { text: 'Error: ' }) : null, text));
}

function clearMessage() {
  byId('messages').replaceChildren();
}

/** A time as "2025-06-01 14:05" (UTC), with the RFC 3339 text as its datetime. */
function when(iso, empty = '—') {
  if (!iso) return document.createTextNode(empty);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return document.createTextNode(iso);
  const shown = date.toISOString().slice(0, 16).replace('T', ' ');
  return el('time', { datetime: iso, title: iso, text: shown });
}

function words(text) {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// ------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message, stale = false, code = null) {
    super(message);
    this.status = status;
    this.stale = stale;
    this.code = code;
  }
}

/** Deny codes that say the caller's own key no longer works. */
const KEY_GONE = ['disabled', 'expired', 'leaked', 'not_found', 'malformed'];

/** Whether an answer says the session's key no longer works: a 401, or a
 * refusal of the caller (not of the action) with one of KEY_GONE. */
function endsSession(error) {
  return error.status === 401 || (error.status === 403 && KEY_GONE.includes(error.code));
}

/** Says why an action failed, unless its session has ended since. */
function report(what, error) {
  if (!token || error.stale) return;
  say(`${what}: ${error.message}`, 'error');
}

/** The message of an error answer: the management API's or OAuth's form. */
function errorMessage(status, body) {
  if (body && typeof body === 'object') {
    if (body.error && typeof body.error === 'object' && body.error.message) {
      return String(body.error.message);
    }
    if (body.error_description) return String(body.error_description);
    if (typeof body.error === 'string') return body.error;
    if (body.reason) return String(body.reason);
  }
  return `the server answered HTTP ${status}`;
}

async function send(path, init) {
  let response;
  try {
    response = await fetch(new URL(path, BASE), {
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
      ...init,
    });
  } catch (error) {
    throw new ApiError(0, `the server could not be reached (${error.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const code = body && body.error && typeof body.error === 'object' ? body.error.code : null;
    throw new ApiError(response.status, errorMessage(response.status, body), false,
      typeof code === 'string' ? code : null);
  }
  return body;
}

/**
 * Calls the management API with the access token. A change to `key` names
 * the version the page shows when the registry requires it (If-Match).
 */
async function api(method, path, body, key) {
  if (!token) throw new ApiError(401, 'you are not logged in', true);
  const asked = session;
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token}` };
  if (key && me && me.require_if_match) headers['If-Match'] = `"${key.entity_tag}"`;
  // On a replica, a write is forwarded to the primary rather than
  // redirected there: a page cannot follow a redirect to another origin.
  if (method !== 'GET') headers['Keyhost-Forward'] = 'primary';
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await send(path, init);
  } catch (error) {
    if (asked !== session) throw new ApiError(error.status, error.message, true);
    if (endsSession(error)) {
      logout(`Your session has ended (${error.message}). Log in again.`);
      error.stale = true;
    }
    throw error;
  }
  if (asked !== session) throw new ApiError(0, 'the session has ended', true);
  return answer;
}

const keyPath = (id, action = '') =>
  `v1/keys/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

// ------------------------------------------------------------ login, logout

async function login(event) {
  event.preventDefault();
  const input = byId('apikey');
  const apikey = input.value.trim();
  input.value = '';
  if (!apikey) {
    say('Enter an API key to log in.', 'error');
    input.focus();
    return;
  }
  const button = byId('login-button');
  button.disabled = true;
  say('Logging in…');
  try {
    const body = new URLSearchParams({ grant_type: GRANT, apikey });
    const answer = await send('identity/token', {
      method: 'POST',
      headers: {
        Accept: 'application/json',
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body,
    });
    if (!answer || typeof answer.access_token !== 'string') {
      throw new ApiError(0, 'the token endpoint gave no access token');
    }
    token = answer.access_token;
    session += 1;
    sessionKeyId = claims(token).key_id || null;
    const seconds = Number(answer.expires_in);
    if (seconds > 0) {
      // setTimeout takes at most 2^31 - 1 ms.
      tokenTimer = setTimeout(() => logout('Your session has expired. Log in again.'),
        Math.min(seconds * 1000, 2 ** 31 - 1));
    }
    me = await api('GET', 'v1/me');
    showConsole();
    await loadKeys();
    say(`Logged in as ${me.iam_id}.`, 'success');
    byId('console-title').focus();
  } catch (error) {
    if (token) logout();
    if (error.stale && error.status !== 401) return;
    say(`Could not log in: ${error.message}`, 'error');
    input.focus();
  } finally {
    button.disabled = false;
  }
}

/** The claims of a JWT, or an empty object (they are only shown, never trusted). */
function claims(jwt) {
  try {
    const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '='))) || {};
  } catch {
    return {};
  }
}

/**
 * Forgets the token and everything shown since logging in. A secret still
 * on screen stays until its dialog is closed: it may be the only copy.
 */
function logout(message) {
  token = null;
  session += 1;
  detailsRender += 1;
  sessionKeyId = null;
  me = null;
  keys = [];
  selectedId = null;
  if (tokenTimer) clearTimeout(tokenTimer);
  tokenTimer = null;
  for (const body of byId('keys-table').querySelectorAll('tbody')) body.remove();
  byId('keys-table').setAttribute('aria-busy', 'true');
  const details = byId('key-details');
  details.replaceChildren();
  details.hidden = true;
  byId('create-form').reset();
  byId('create-for').replaceChildren();
  byId('whoami').textContent = '';
  byId('session').hidden = true;
  byId('console').hidden = true;
  byId('login-section').hidden = false;
  if (message) say(message, message.startsWith('Your session') ? 'error' : 'info');
  else clearMessage();
  byId('apikey').focus();
}

function showConsole() {
  byId('whoami').textContent = me.iam_id;
  byId('session').hidden = false;
  byId('login-section').hidden = true;
  byId('console').hidden = false;
  const forSelect = byId('create-for');
  forSelect.replaceChildren(
    el('option', { value: me.iam_id, text: `${me.iam_id} (yourself)` }),
    ...(me.service_ids || []).map((sid) => el('option', { value: sid.iam_id, text: sid.iam_id })),
  );
  fitKinds();
}

// ---------------------------------------------------------------- the table

async function loadKeys() {
  const table = byId('keys-table');
  table.setAttribute('aria-busy', 'true');
  // The report only marks keys: the table shows without it.
  const [answer, report] = await Promise.all([
    api('GET', 'v1/keys'),
    // Over its default period, 720h: the page's requests carry no query,
    // so nothing of a session ever rides in an address.
    api('GET', 'v1/reports/inactive').catch(() => null),
  ]);
  keys = Array.isArray(answer.keys) ? answer.keys : [];
  inactive = new Set((report && Array.isArray(report.keys) ? report.keys : []).map((k) => k.id));
  renderKeys();
  table.dataset.revision = String(answer.revision ?? '');
  table.setAttribute('aria-busy', 'false');
  if (selectedId && keys.some((k) => k.id === selectedId)) renderDetails(selectedId, false);
  else closeDetails(false);
}

/** The identities whose keys are shown, the user first. */
function owners() {
  const list = [me.iam_id, ...(me.service_ids || []).map((s) => s.iam_id)];
  for (const key of keys) if (!list.includes(key.owner)) list.push(key.owner);
  return list;
}

function badges(key) {
  const list = [];
  if (key.locked) list.push(['locked', 'Locked']);
  if (key.disabled) list.push(['disabled', 'Disabled']);
  if (key.leaked) list.push(['leaked', 'Leaked']);
  if (key.expired) list.push(['expired', 'Expired']);
  else if (key.expires_at) {
    const left = Date.parse(key.expires_at) - Date.now();
    if (left >= 0 && left <= SOON) list.push(['expiring', 'Expiring soon']);
  }
  if (key.rotation_grace_until) list.push(['grace', 'Old secret in grace']);
  if (!list.length) list.push(['active', 'Active']);
  if (inactive.has(key.id)) list.push(['inactive', 'Unused for 30 days']);
  if (key.id === sessionKeyId) list.push(['session', 'Logged in with it']);
  return el('ul', { class: 'badges' },
    list.map(([kind, label]) => el('li', { class: `badge badge-${kind}`, dataset: { badge: kind }, text: label })));
}

function renderKeys() {
  const table = byId('keys-table');
  for (const body of table.querySelectorAll('tbody')) body.remove();
  const columns = 10;
  owners().forEach((owner, index) => {
    const own = keys.filter((k) => k.owner === owner);
    const label = owner === me.iam_id ? `${owner} (you)` : `${owner} (service ID)`;
    const body = el('tbody', { class: 'owner-group', dataset: { owner } },
      el('tr', { class: 'group-row' },
        el('th', { scope: 'rowgroup', colspan: columns, id: `group-${index}` },
          label, ' ', el('span', { class: 'count', text: `· ${plural(own.length, 'key')}` }))));
    if (!own.length) {
      body.append(el('tr', {}, el('td', { colspan: columns, class: 'empty', text: 'No keys.' })));
    }
    for (const key of own) body.append(keyRow(key, `group-${index}`));
    table.append(body);
  });
}

function keyRow(key, groupId) {
  const nameId = `name-${key.id}`;
  return el('tr', { class: 'key-row', dataset: { keyId: key.id, owner: key.owner } },
    el('th', { scope: 'row', class: 'key-name', id: nameId, text: key.name }),
    el('td', { class: 'key-id' }, el('code', { text: key.id })),
    el('td', { class: 'key-kind', text: key.kind }),
    el('td', { class: 'key-service', text: key.service || '—' }),
    el('td', { class: 'key-created' }, when(key.created_at)),
    el('td', { class: 'key-expires' }, when(key.expires_at, 'never')),
    el('td', { class: 'key-last-used' }, when(key.last_used, 'never')),
    el('td', { class: 'key-uses numeric', text: String(key.use_count ?? 0) }),
    el('td', { class: 'key-state' }, badges(key)),
    el('td', { class: 'key-actions' },
      el('button', {
        type: 'button',
        class: 'button-ghost manage',
        'aria-describedby': `${nameId} ${groupId}`,
        'aria-expanded': String(selectedId === key.id),
        'aria-controls': 'key-details',
        on: { click: () => renderDetails(key.id, true) },
        text: 'Manage',
      })));
}

// --------------------------------------------------------- the key's panel

function closeDetails(focusTable = true) {
  const previous = selectedId;
  selectedId = null;
  detailsRender += 1;
  const details = byId('key-details');
  details.replaceChildren();
  details.hidden = true;
  for (const button of document.querySelectorAll('#keys-table button.manage')) {
    button.setAttribute('aria-expanded', 'false');
  }
  if (focusTable && previous) {
    const row = [...document.querySelectorAll('#keys-table tr.key-row')]
      .find((r) => r.dataset.keyId === previous);
    if (row) row.querySelector('button.manage').focus();
  }
}

function renderDetails(id, focus) {
  const key = keys.find((k) => k.id === id);
  if (!key) return;
  selectedId = id;
  const render = ++detailsRender;
  for (const row of document.querySelectorAll('#keys-table tr.key-row')) {
    row.querySelector('button.manage')
      .setAttribute('aria-expanded', String(row.dataset.keyId === id));
  }
  const details = byId('key-details');
  details.dataset.keyId = id;
  const list = (items, empty) => (items && items.length ? items.join(', ') : empty);
  const facts = [
    ['ID', el('code', { text: key.id })],
    ['Belongs to', key.owner],
    ['Kind', key.kind],
    ['Service', key.service || '—'],
    ['Description', key.description || '—'],
    ['Scopes', list(key.scopes, 'all of the identity\'s scopes')],
    ['Allowed IP addresses', list(key.allowed_ips, 'any')],
    ['Rate limit', key.rate_limit || 'none'],
    ['Created', when(key.created_at)],
    ['Updated', when(key.updated_at)],
    ['Expires', when(key.expires_at, 'never')],
    ['Old secret valid until', when(key.rotation_grace_until, '—')],
    ['Last used', when(key.last_used, 'never')],
    ['Uses', String(key.use_count ?? 0)],
  ];
  if (key.last_service || key.last_address) {
    facts.push(['Last used for', `${key.last_service || 'no service'} from ${key.last_address || 'an unknown address'}`]);
  }

  const graceInput = el('input', {
    id: 'rotate-grace', type: 'text', value: '24h', 'aria-describedby': 'rotate-grace-hint',
  });
  const rotateForm = el('form', { id: 'rotate-form', class: 'inline-form', method: 'post', novalidate: true },
    el('div', { class: 'field' },
      el('label', { for: 'rotate-grace', text: 'Grace period for the old secret' }),
      graceInput,
      el('p', { id: 'rotate-grace-hint', class: 'hint', text: 'How long the old secret keeps working (30m, 24h); empty stops it at once.' })),
    el('button', { id: 'rotate-button', type: 'submit', class: 'button-secondary', text: 'Rotate' }));
  rotateForm.addEventListener('submit', (event) => {
    event.preventDefault();
    rotate(key, graceInput.value.trim(), event.submitter || rotateForm);
  });

  const confirmBox = el('div', { id: 'delete-confirm-box', class: 'confirm', hidden: true, role: 'group', 'aria-labelledby': 'delete-confirm-text' },
    el('p', { id: 'delete-confirm-text' },
      'Delete the key ', el('strong', { text: key.name }), ' (', el('code', { text: key.id }),
      ')? Whoever uses it is refused from then on. This cannot be undone.'),
    el('button', { id: 'delete-confirm', type: 'button', class: 'button-danger', text: 'Delete this key', on: { click: () => remove(key) } }),
    el('button', {
      id: 'delete-cancel', type: 'button', class: 'button-ghost', text: 'Cancel',
      on: { click: () => { confirmBox.hidden = true; byId('delete-button').focus(); } },
    }));

  const actions = el('div', { class: 'actions' },
    el('button', {
      id: 'lock-toggle', type: 'button', class: 'button-secondary',
      text: key.locked ? 'Unlock' : 'Lock',
      on: { click: () => act(key, key.locked ? 'unlock' : 'lock') },
    }),
    el('button', {
      id: 'disable-toggle', type: 'button', class: 'button-secondary',
      text: key.disabled ? 'Enable' : 'Disable',
      on: { click: () => act(key, key.disabled ? 'enable' : 'disable') },
    }),
    key.rotation_grace_until ? el('button', {
      id: 'end-grace', type: 'button', class: 'button-secondary', text: 'End the grace period now',
      on: { click: () => act(key, 'end-grace') },
    }) : null,
    el('button', {
      id: 'delete-button', type: 'button', class: 'button-danger-ghost', text: 'Delete',
      on: { click: () => { confirmBox.hidden = false; byId('delete-cancel').focus(); } },
    }));

  const usage = el('div', { id: 'usage', class: 'usage', 'aria-busy': 'true' },
    el('p', { class: 'hint', text: 'Loading usage…' }));

  details.replaceChildren(
    el('div', { class: 'section-head' },
      el('h2', { id: 'details-title', tabindex: '-1' }, 'Key ', el('span', { class: 'details-name', text: key.name })),
      el('button', { id: 'details-close', type: 'button', class: 'button-ghost', text: 'Close', on: { click: () => closeDetails(true) } })),
    badges(key),
    el('dl', { class: 'facts' }, facts.map(([term, value]) => [el('dt', { text: term }), el('dd', {}, value)])),
    el('h3', { text: 'Actions' }),
    actions,
    confirmBox,
    rotateForm,
    el('h3', { id: 'usage-title', text: 'Requests per hour, last 24 hours' }),
    usage);
  details.hidden = false;
  if (focus) byId('details-title').focus();
  loadUsage(key, usage, render);
}

async function act(key, action) {
  const done = {
    lock: 'locked', unlock: 'unlocked', disable: 'disabled', enable: 'enabled',
    'end-grace': 'no longer accepts its old secret',
  }[action];
  try {
    await api('POST', keyPath(key.id, action), undefined, key);
    say(`The key “${key.name}” is ${done}.`, 'success');
    await loadKeys();
    byId('details-title')?.focus();
  } catch (error) {
    report(`Could not ${action.replace('-', ' ')} the key “${key.name}”`, error);
  }
}

async function remove(key) {
  try {
    await api('DELETE', keyPath(key.id), undefined, key);
    say(`The key “${key.name}” was deleted.`, 'success');
    selectedId = null;
    await loadKeys();
    byId('keys-title').focus();
  } catch (error) {
    if (token && !error.stale) {
      report(`Could not delete the key “${key.name}”`, error);
      const box = byId('delete-confirm-box');
      if (box) box.hidden = true;
      byId('delete-button')?.focus();
    }
  }
}

async function rotate(key, grace, trigger) {
  try {
    const answer = await api('POST', keyPath(key.id, 'rotate'), grace ? { grace } : {}, key);
    const until = answer.record && answer.record.rotation_grace_until;
    say(until
      ? `The key “${key.name}” has a new secret; the old one works until ${until}.`
      : `The key “${key.name}” has a new secret; the old one no longer works.`, 'success');
    if (key.id === sessionKeyId) {
      // A rotation ends the tokens of the old secret, this session's too:
      // the new secret stays on screen until it is saved, then log in again.
      showSecret(answer, 'New secret', trigger, () => logout(
        `The key “${key.name}” you logged in with was rotated, which ends its sessions. Log in again with its new secret.`));
      return;
    }
    showSecret(answer, 'New secret', trigger);
    await loadKeys();
  } catch (error) {
    report(`Could not rotate the key “${key.name}”`, error);
  }
}

// ------------------------------------------------------------ usage chart

async function loadUsage(key, container, render) {
  let answer;
  try {
    answer = await api('GET', `${keyPath(key.id)}/usage`);
  } catch (error) {
    if (render !== detailsRender || error.stale) return;
    container.setAttribute('aria-busy', 'false');
    container.replaceChildren(el('p', { class: 'hint', text: `Usage is not available: ${error.message}` }));
    return;
  }
  if (render !== detailsRender) return;
  container.replaceChildren(...usageChart(key, Array.isArray(answer.hours) ? answer.hours : []));
  container.setAttribute('aria-busy', 'false');
}

function hourLabel(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : `${date.toISOString().slice(11, 16)}`;
}

/** An SVG bar chart of requests per hour, with a text summary and a table. */
function usageChart(key, hours) {
  const counts = hours.map((h) => Math.max(0, Number(h.count) || 0));
  const total = counts.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...counts);
  const busiest = counts.indexOf(peak);
  const summary = total === 0
    ? `No requests in the last 24 hours.`
    : `${plural(total, 'request')} in the last 24 hours; the busiest hour began at ${hourLabel(hours[busiest].start)} UTC with ${plural(peak, 'request')}.`;

  const width = 720;
  const height = 200;
  const left = 40;
  const right = 20;
  const bottom = 24;
  const top = 12;
  const plotHeight = height - bottom - top;
  const slot = (width - left - right) / Math.max(hours.length, 1);
  const scale = peak > 0 ? plotHeight / peak : 0;
  const titleId = `usage-chart-title-${key.id}`;
  const descId = `usage-chart-desc-${key.id}`;

  const chart = svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-labelledby': `${titleId} ${descId}`, preserveAspectRatio: 'xMidYMid meet',
  },
  svg('title', { id: titleId, text: `Requests per hour for the key ${key.name}, last 24 hours` }),
  svg('desc', { id: descId, text: summary }),
  svg('line', { class: 'axis', x1: left, y1: top + plotHeight, x2: width - right, y2: top + plotHeight }),
  svg('text', { class: 'tick', x: left - 6, y: top + 4, 'text-anchor': 'end', text: String(peak) }),
  svg('text', { class: 'tick', x: left - 6, y: top + plotHeight, 'text-anchor': 'end', text: '0' }));
  hours.forEach((hour, i) => {
    const barHeight = counts[i] * scale;
    const x = left + i * slot + slot * 0.15;
    chart.append(svg('rect', {
      class: 'bar', x: x.toFixed(1), y: (top + plotHeight - barHeight).toFixed(1),
      width: (slot * 0.7).toFixed(1), height: Math.max(barHeight, counts[i] ? 1 : 0).toFixed(1),
    }, svg('title', { text: `${hourLabel(hour.start)} UTC: ${plural(counts[i], 'request')}` })));
    if (i % 6 === 0 || i === hours.length - 1) {
      chart.append(svg('text', {
        class: 'tick', x: (left + i * slot + slot / 2).toFixed(1), y: height - 6,
        'text-anchor': 'middle', text: hourLabel(hour.start),
      }));
    }
  });

  const table = el('table', { class: 'usage-table' },
    el('caption', { class: 'visually-hidden', text: 'Requests per hour' }),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Hour (UTC)' }), el('th', { scope: 'col', class: 'numeric', text: 'Requests' }))),
    el('tbody', {}, hours.map((hour, i) => el('tr', {},
      el('th', { scope: 'row' }, when(hour.start)),
      el('td', { class: 'numeric', text: String(counts[i]) })))));

  return [
    el('figure', { class: 'chart-figure' }, chart,
      el('figcaption', { id: 'usage-summary', class: 'usage-summary', dataset: { total: String(total) }, text: summary })),
    el('details', { class: 'usage-details' }, el('summary', { text: 'Hourly counts as a table' }), table),
  ];
}

// ------------------------------------------------------------ creating keys

const KIND_FITS = {
  user: ['user', 'classic-infrastructure', 'service-specific'],
  'service-id': ['service-id', 'service-specific'],
};

/** Offers only the kinds that fit the chosen identity. */
function fitKinds() {
  const forValue = byId('create-for').value;
  const identity = forValue.startsWith('service-id:') ? 'service-id' : 'user';
  const kind = byId('create-kind');
  for (const option of kind.options) option.disabled = !KIND_FITS[identity].includes(option.value);
  if (kind.selectedOptions[0]?.disabled) kind.value = identity;
  fitService();
}

function fitService() {
  const specific = byId('create-kind').value === 'service-specific';
  const service = byId('create-service');
  service.disabled = !specific;
  service.required = specific;
  if (!specific) service.value = '';
}

async function create(event) {
  event.preventDefault();
  const form = byId('create-form');
  const value = (id) => byId(id).value.trim();
  const name = value('create-name');
  if (!name) {
    say('Give the key a name.', 'error');
    byId('create-name').focus();
    return;
  }
  const body = { name, kind: value('create-kind'), for: value('create-for') };
  const optional = {
    service: value('create-service'),
    expires: value('create-expires'),
    description: value('create-description'),
    rate_limit: value('create-rate'),
  };
  for (const [field, text] of Object.entries(optional)) if (text) body[field] = text;
  const scopes = words(value('create-scopes'));
  if (scopes.length) body.scopes = scopes;
  const ips = words(value('create-ips'));
  if (ips.length) body.allowed_ips = ips;

  const button = byId('create-button');
  button.disabled = true;
  try {
    const answer = await api('POST', 'v1/keys', body);
    say(`The key “${name}” was created for ${answer.owner}.`, 'success');
    const forValue = byId('create-for').value;
    form.reset();
    byId('create-for').value = forValue;
    fitKinds();
    showSecret(answer, 'API key created', button);
    await loadKeys();
  } catch (error) {
    report('Could not create the key', error);
  } finally {
    button.disabled = false;
  }
}

// ----------------------------------------------------- the secret, once

let closeSecretDialog = null;

/** Shows a secret once, in a modal dialog removed from the page on close. */
function showSecret(answer, heading, trigger, onClose) {
  closeSecret();
  let secret = answer.key;
  const record = answer.record || {};
  const name = record.name || '';
  const dialog = el('dialog', {
    id: 'secret-dialog', class: 'secret-dialog',
    'aria-labelledby': 'secret-title', 'aria-describedby': 'secret-warning',
  });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      say('The key was copied to the clipboard.', 'success');
    } catch (error) {
      say(`Could not copy the key (${error.message}); select it and copy it by hand.`, 'error');
    }
  };
  const download = () => {
    const file = {
      name,
      description: record.description || '',
      id: answer.id,
      owner: answer.owner,
      kind: answer.kind,
      createdAt: record.created_at,
      apikey: secret,
    };
    const blob = new Blob([`${JSON.stringify(file, null, 2)}\n`], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const safe = name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || 'key';
    const link = el('a', { href: url, download: `apikey-${safe}.json`, class: 'visually-hidden' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  let dismissed = false;
  // Removes the dialog and drops the secret at once (the dialog's own
  // close event comes later, and finds nothing left to do).
  const finish = (restoreFocus) => {
    if (dismissed) return;
    dismissed = true;
    secret = null;
    if (dialog.open) dialog.close();
    dialog.replaceChildren();
    dialog.remove();
    if (closeSecretDialog === finish) closeSecretDialog = null;
    if (onClose) onClose();
    else if (restoreFocus) {
      const back = trigger && trigger.isConnected ? trigger : byId('keys-title');
      back?.focus();
    }
  };
  dialog.append(
    el('h2', { id: 'secret-title', text: heading }),
    el('p', { id: 'secret-warning', class: 'warning' },
      el('strong', { text: 'Save this key now. ' }),
      'It is shown only this once: keyhost keeps only a hash of it and cannot show it again. ',
      'Copy it or download it, and keep it somewhere safe.'),
    el('p', {}, 'Key ', el('strong', { text: name }), ' (', el('code', { text: answer.id }), ') of ', answer.owner),
    el('p', { class: 'secret' },
      el('span', { class: 'secret-label', text: 'API key: ' }),
      el('code', { id: 'secret-value', text: secret })),
    el('div', { class: 'actions' },
      el('button', { id: 'secret-copy', type: 'button', class: 'button-secondary', text: 'Copy', on: { click: copy } }),
      el('button', { id: 'secret-download', type: 'button', class: 'button-secondary', text: 'Download', on: { click: download } }),
      el('button', { id: 'secret-close', type: 'button', class: 'button-primary', text: 'I have saved it: close', on: { click: () => finish(true) } })));
  dialog.addEventListener('close', () => finish(true));
  closeSecretDialog = finish;
  document.body.append(dialog);
  dialog.showModal();
  byId('secret-copy').focus();
}

function closeSecret() {
  if (closeSecretDialog) closeSecretDialog(false);
}

// ---------------------------------------------------------------- start

function start() {
  byId('login-form').addEventListener('submit', login);
  byId('logout').addEventListener('click', () => logout('You have logged out.'));
  byId('refresh').addEventListener('click', async () => {
    try {
      await loadKeys();
      say('The list is up to date.', 'info');
    } catch (error) {
      report('Could not load the keys', error);
    }
  });
  byId('create-form').addEventListener('submit', create);
  byId('create-for').addEventListener('change', fitKinds);
  byId('create-kind').addEventListener('change', fitService);
  document.documentElement.dataset.ready = 'true';
  byId('apikey').focus();
}

start();
