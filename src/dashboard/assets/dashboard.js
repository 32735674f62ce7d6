// The asyncfirst dashboard: a page of its own under the dashboard's prefix, talking only to its API
// (api/…, relative to the page). No framework, no inline script or style (the page's CSP forbids
// both), no text put into the page as HTML: every value from a job goes in as text.

const ACTION_HEADER = 'x-asyncfirst-dashboard';
const STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
/** How often a view is read again while the stream of events is not open (it is connecting, or the server is unreachable). */
const REFRESH_MS = 2000;
/** While it is open, the view is still read this often: the counts and the queue lag also move without an event. */
const BACKSTOP_MS = 30_000;
/** After the last event of a burst, one more read: the counts and the chart are cached by the server for a moment. */
const SETTLE_MS = 2500;
const EVENT_TYPES = ['job.queued', 'job.running', 'job.progress', 'job.succeeded', 'job.failed', 'job.canceled'];

const view = document.getElementById('view');
const flash = document.getElementById('flash');
const live = document.getElementById('live');
const confirmDialog = document.getElementById('confirm');

let session = { readOnly: true, principal: '' };
/**
 * The view on screen: its refresh, which jobs' events concern it, and the last answer it drew (an
 * unchanged answer is not drawn again).
 */
let current = { refresh: async () => {}, concerns: () => true, drawn: '' };
let timer;
let generation = 0;
/** The stream of every job's events (api/events): the live updates. */
let events;
let soon;
let settle;

/** An element with attributes and children; strings become text nodes, never HTML. */
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  append(element, children);
  return element;
}

/** A problem+json answer as an Error whose message is its detail. */
class ProblemAnswer extends Error {
  constructor(status, body) {
    super(typeof body === 'object' && body ? body.detail || body.title : `HTTP ${status}`);
    this.status = status;
    this.problem = body;
  }
}

async function api(path, { method = 'GET' } = {}) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers[ACTION_HEADER] = '1';
  const response = await fetch(`api/${path}`, { method, headers, credentials: 'same-origin', cache: 'no-store' });
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: kept as text.
  }
  if (!response.ok) throw new ProblemAnswer(response.status, body);
  return body;
}

function statusBadge(status) {
  return el('span', { class: `status status-${status}`, 'data-status': status }, status);
}

function time(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return el('time', { datetime: iso, title: iso }, date.toLocaleString());
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function seconds(value) {
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.round(value / 60)} min`;
}

function showFlash(message, isError = false) {
  flash.replaceChildren(message);
  flash.classList.toggle('error', isError);
  flash.setAttribute('role', isError ? 'alert' : 'status');
  flash.hidden = false;
}

function hideFlash() {
  flash.hidden = true;
}

function jobLink(id) {
  return el('a', { href: `#/jobs/${encodeURIComponent(id)}`, class: 'mono' }, id);
}

function listLink(filters) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) for (const one of [value].flat()) query.append(name, one);
  return `#/jobs?${query}`;
}

// --- the overview ------------------------------------------------------------------------

function overviewView() {
  const body = el('div');
  view.replaceChildren(el('h1', {}, 'Overview'), body);
  return {
    async refresh() {
      const overview = await api('overview');
      return [JSON.stringify(overview), () => body.replaceChildren(...drawOverview(overview))];
    },
  };
}

function drawOverview({ counts, queueLag, activity, asOf }) {
  const totals = Object.fromEntries(STATES.map((state) => [state, 0]));
  const byOperation = new Map();
  for (const { operation, status, count } of counts) {
    totals[status] += count;
    if (!byOperation.has(operation)) byOperation.set(operation, Object.fromEntries(STATES.map((state) => [state, 0])));
    byOperation.get(operation)[status] = count;
  }
  const worstLag = queueLag.reduce((worst, entry) => Math.max(worst, entry.seconds), 0);
  const cards = el(
    'div',
    { class: 'cards' },
    STATES.map((state) =>
      el(
        'a',
        { class: 'card', href: listLink({ status: state }), 'data-total': state },
        el('span', { class: 'value' }, totals[state]),
        el('span', { class: 'label' }, state),
      ),
    ),
    el('div', { class: 'card', 'data-total': 'lag' }, el('span', { class: 'value' }, seconds(worstLag)), el('span', { class: 'label' }, 'queue lag')),
  );
  const table = el(
    'table',
    { id: 'counts' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', {}, 'Operation'),
        STATES.map((state) => el('th', { class: 'number' }, state)),
      ),
    ),
    el(
      'tbody',
      {},
      byOperation.size === 0 ? el('tr', {}, el('td', { colspan: STATES.length + 1, class: 'muted' }, 'No jobs yet.')) : null,
      [...byOperation].map(([operation, row]) =>
        el(
          'tr',
          { 'data-operation': operation },
          el('td', {}, el('a', { href: listLink({ operation }) }, operation)),
          STATES.map((state) =>
            el('td', { class: 'number', 'data-status': state }, row[state] ? el('a', { href: listLink({ operation, status: state }) }, row[state]) : '0'),
          ),
        ),
      ),
    ),
  );
  const lag = el(
    'table',
    { id: 'queue-lag' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Operation'), el('th', { class: 'number' }, 'Oldest due queued job waiting'))),
    el(
      'tbody',
      {},
      queueLag.length === 0 ? el('tr', {}, el('td', { colspan: 2, class: 'muted' }, 'No job is waiting.')) : null,
      queueLag.map((entry) => el('tr', {}, el('td', {}, entry.operation), el('td', { class: 'number' }, seconds(entry.seconds)))),
    ),
  );
  return [
    cards,
    el('h2', {}, 'Jobs by operation and status'),
    el('div', { class: 'scroll' }, table),
    el('h2', {}, 'Accepted and finished per minute, last hour'),
    drawChart(activity),
    el('h2', {}, 'Queue lag'),
    el('div', { class: 'scroll' }, lag),
    el('p', { class: 'muted' }, 'Counts as of ', time(asOf), '.'),
  ];
}

function drawChart({ since, minutes }) {
  const start = Date.parse(since);
  const slots = Array.from({ length: 61 }, (_, index) => ({ minute: start + index * 60_000, accepted: 0, succeeded: 0, failed: 0, canceled: 0 }));
  for (const entry of minutes) {
    const index = Math.round((Date.parse(entry.minute) - start) / 60_000);
    if (slots[index]) Object.assign(slots[index], { ...entry, minute: slots[index].minute });
  }
  const highest = Math.max(1, ...slots.map((slot) => Math.max(slot.accepted, slot.succeeded + slot.failed + slot.canceled)));
  const width = 610;
  const height = 140;
  const slotWidth = width / slots.length;
  const bar = Math.max(1, slotWidth / 2 - 1);
  const bars = [];
  let accepted = 0;
  let finished = 0;
  slots.forEach((slot, index) => {
    const x = index * slotWidth;
    const label = `${new Date(slot.minute).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${slot.accepted} accepted, ${slot.succeeded} succeeded, ${slot.failed} failed, ${slot.canceled} canceled`;
    accepted += slot.accepted;
    const scale = (count) => (count / highest) * height;
    const group = svg('g', {}, svg('title', {}, label));
    if (slot.accepted) group.append(svg('rect', { class: 'bar-accepted', x, y: height - scale(slot.accepted), width: bar, height: scale(slot.accepted) }));
    let top = height;
    for (const state of ['succeeded', 'failed', 'canceled']) {
      if (!slot[state]) continue;
      finished += slot[state];
      top -= scale(slot[state]);
      group.append(svg('rect', { class: `bar-${state}`, x: x + bar, y: top, width: bar, height: scale(slot[state]) }));
    }
    bars.push(group);
  });
  const chart = svg(
    'svg',
    {
      viewBox: `0 0 ${width} ${height + 14}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': `${accepted} accepted and ${finished} finished in the last hour`,
    },
    svg('line', { class: 'axis', x1: 0, y1: height, x2: width, y2: height }),
    bars,
  );
  return el(
    'div',
    { class: 'chart', id: 'activity', 'data-accepted': accepted, 'data-finished': finished },
    chart,
    el(
      'div',
      { class: 'ticks' },
      ['60 min ago', '45', '30', '15', 'now'].map((tick) => el('span', {}, tick)),
    ),
    el(
      'div',
      { class: 'legend' },
      el('span', {}, el('span', { class: 'swatch accepted' }), `accepted (${accepted})`),
      ['succeeded', 'failed', 'canceled'].map((state) =>
        el('span', {}, el('span', { class: `swatch ${state}` }), `${state} (${slots.reduce((sum, slot) => sum + slot[state], 0)})`),
      ),
      el('span', {}, `tallest bar ${highest}; left: accepted, right: finished`),
    ),
  );
}

// --- the job list ------------------------------------------------------------------------

function listView(query) {
  const filters = {
    status: query.getAll('status').filter((state) => STATES.includes(state)),
    operation: query.get('operation') ?? '',
    createdAfter: query.get('createdAfter') ?? '',
    createdBefore: query.get('createdBefore') ?? '',
    limit: query.get('limit') ?? '50',
    cursor: query.get('cursor') ?? '',
  };
  const apply = (changes) => {
    const next = { ...filters, cursor: '', ...changes };
    const params = new URLSearchParams();
    for (const state of next.status) params.append('status', state);
    for (const name of ['operation', 'createdAfter', 'createdBefore', 'cursor']) if (next[name]) params.set(name, next[name]);
    if (next.limit !== '50') params.set('limit', next.limit);
    location.hash = `#/jobs?${params}`;
  };
  const form = el(
    'form',
    {
      class: 'filters',
      id: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const local = (name) => (data.get(name) ? new Date(String(data.get(name))).toISOString() : '');
        apply({
          status: data.getAll('status').map(String),
          operation: String(data.get('operation') ?? '').trim(),
          createdAfter: local('createdAfter'),
          createdBefore: local('createdBefore'),
          limit: String(data.get('limit')),
        });
      },
    },
    el(
      'fieldset',
      {},
      el('legend', {}, 'Status'),
      STATES.map((state) =>
        el('label', {}, el('input', { type: 'checkbox', name: 'status', value: state, checked: filters.status.includes(state) }), ` ${state}`),
      ),
    ),
    el('label', { class: 'field' }, 'Operation', el('input', { name: 'operation', value: filters.operation, placeholder: 'any', size: 14 })),
    el('label', { class: 'field' }, 'Created after', el('input', { type: 'datetime-local', name: 'createdAfter', value: toLocalInput(filters.createdAfter) })),
    el(
      'label',
      { class: 'field' },
      'Created before',
      el('input', { type: 'datetime-local', name: 'createdBefore', value: toLocalInput(filters.createdBefore) }),
    ),
    el(
      'label',
      { class: 'field' },
      'Per page',
      el(
        'select',
        { name: 'limit' },
        ['20', '50', '100', '200'].map((value) => el('option', { value, selected: value === filters.limit }, value)),
      ),
    ),
    el('button', { type: 'submit', class: 'primary' }, 'Apply'),
  );
  for (const input of form.querySelectorAll('input[type=checkbox], select')) input.addEventListener('change', () => form.requestSubmit());
  const results = el('div');
  view.replaceChildren(el('h1', {}, 'Jobs'), form, results);
  const params = new URLSearchParams();
  for (const state of filters.status) params.append('status', state);
  for (const name of ['operation', 'createdAfter', 'createdBefore', 'cursor', 'limit']) if (filters[name]) params.set(name, filters[name]);
  return {
    async refresh() {
      const page = await api(`jobs?${params}`);
      return [JSON.stringify(page), () => results.replaceChildren(...drawList(page, filters, apply))];
    },
  };
}

function toLocalInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

function drawList(page, filters, apply) {
  const table = el(
    'table',
    { id: 'jobs' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', {}, 'Job'),
        el('th', {}, 'Status'),
        el('th', {}, 'Operation'),
        el('th', { class: 'wide' }, 'Principal'),
        el('th', { class: 'wide number' }, 'Attempts'),
        el('th', { class: 'wide' }, 'Created'),
      ),
    ),
    el(
      'tbody',
      {},
      page.jobs.length === 0 ? el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No job matches.')) : null,
      page.jobs.map((job) =>
        el(
          'tr',
          { 'data-job': job.id },
          el('td', {}, jobLink(job.id)),
          el('td', {}, statusBadge(job.status)),
          el('td', {}, job.operation),
          el('td', { class: 'wide' }, job.principal),
          el('td', { class: 'wide number' }, `${job.attempts}/${job.maxAttempts}`),
          el('td', { class: 'wide' }, el('span', { title: job.createdAt }, ago(job.createdAt))),
        ),
      ),
    ),
  );
  const pager = el(
    'div',
    { class: 'pager' },
    filters.cursor ? el('button', { type: 'button', onclick: () => apply({ cursor: '' }) }, 'Newest') : null,
    page.nextCursor ? el('button', { type: 'button', id: 'older', onclick: () => apply({ cursor: page.nextCursor }) }, 'Older jobs') : null,
  );
  return [table, pager];
}

// --- one job -----------------------------------------------------------------------------

function jobView(id) {
  const body = el('div');
  view.replaceChildren(el('h1', {}, 'Job ', el('span', { class: 'mono' }, id)), body);
  return {
    // Only this job's events make the page read it again.
    concerns: (jobId) => jobId === id,
    async refresh() {
      const detail = await api(`jobs/${encodeURIComponent(id)}`);
      return [JSON.stringify(detail), () => body.replaceChildren(...drawJob(detail))];
    },
  };
}

function json(value) {
  return el('pre', {}, JSON.stringify(value, null, 2));
}

function drawJob({ job, input, events, eventsOmitted }) {
  const facts = el(
    'dl',
    { class: 'facts', id: 'facts' },
    el('dt', {}, 'Status'),
    el('dd', { id: 'job-status' }, statusBadge(job.status), job.cancelRequested ? ' (cancel requested)' : ''),
    el('dt', {}, 'Operation'),
    el('dd', {}, job.operation),
    el('dt', {}, 'Principal'),
    el('dd', {}, job.principal),
    el('dt', {}, 'Attempts'),
    el('dd', {}, `${job.attempts} of ${job.maxAttempts}`),
    el('dt', {}, 'Created'),
    el('dd', {}, time(job.createdAt)),
    el('dt', {}, 'Updated'),
    el('dd', {}, time(job.updatedAt)),
    job.nextAttemptAt ? [el('dt', {}, 'Next attempt'), el('dd', {}, time(job.nextAttemptAt))] : null,
    job.finishedAt ? [el('dt', {}, 'Finished'), el('dd', {}, time(job.finishedAt))] : null,
    job.progress
      ? [
          el('dt', {}, 'Progress'),
          el(
            'dd',
            {},
            el('progress', { max: 100, value: job.progress.percent }),
            ` ${job.progress.percent}%`,
            job.progress.message ? ` — ${job.progress.message}` : '',
          ),
        ]
      : null,
  );
  const actions = el('div', { class: 'actions' });
  if (!session.readOnly) {
    if (job.status === 'queued' || (job.status === 'running' && !job.cancelRequested)) {
      actions.append(el('button', { type: 'button', class: 'danger', id: 'cancel', onclick: () => act(job, 'cancel') }, 'Cancel job'));
    }
    if (job.status === 'failed' || job.status === 'canceled') {
      actions.append(el('button', { type: 'button', class: 'primary', id: 'retry', onclick: () => act(job, 'retry') }, 'Retry job'));
    }
  }
  const outcome = [];
  if (job.status === 'succeeded') {
    outcome.push(el('h2', {}, 'Result'));
    outcome.push(
      job.resultLocation
        ? el('p', { id: 'result' }, 'At ', el('span', { class: 'mono' }, job.resultLocation))
        : el('div', { id: 'result' }, json(job.result ?? null)),
    );
  } else if (job.error) {
    outcome.push(el('h2', {}, job.status === 'failed' || job.status === 'canceled' ? 'Error' : 'Last attempt’s error'));
    outcome.push(
      el(
        'div',
        { id: 'error' },
        el(
          'dl',
          { class: 'facts' },
          ['title', 'status', 'detail', 'type'].flatMap((name) =>
            job.error[name] === undefined ? [] : [el('dt', {}, name), el('dd', {}, String(job.error[name]))],
          ),
        ),
        el('details', {}, el('summary', {}, 'Problem details as JSON'), json(job.error)),
      ),
    );
  }
  const timeline = el(
    'ol',
    { class: 'timeline', id: 'timeline' },
    eventsOmitted ? el('li', { class: 'muted' }, `${eventsOmitted} earlier events not shown`) : null,
    eventsOmitted ? null : el('li', { 'data-event': 'job.accepted' }, time(job.createdAt), ' · accepted (queued)'),
    events.map((event) =>
      el(
        'li',
        { 'data-event': event.type },
        time(event.at),
        ` · ${event.type}`,
        event.type === 'job.progress' && event.progress ? ` ${event.progress.percent}%${event.progress.message ? ` ${event.progress.message}` : ''}` : '',
        event.type === 'job.running' ? ` (attempt ${event.attempts})` : '',
        event.error && event.type !== 'job.running' ? ` — ${event.error}` : '',
      ),
    ),
  );
  const deliveries = job.deliveries?.length
    ? deliveryTable('deliveries', job.deliveries, 'Last answer')
    : el('p', { class: 'muted' }, 'No webhook: the submission named no Callback-URL.');
  const notifications = job.notifications?.length ? deliveryTable('notifications', job.notifications, 'Last error') : undefined;
  return [
    facts,
    actions,
    ...outcome,
    el('h2', {}, 'Input'),
    el('div', { id: 'input' }, json(input)),
    el('h2', {}, 'Events'),
    timeline,
    el('h2', {}, 'Webhook deliveries'),
    deliveries,
    ...(notifications ? [el('h2', {}, 'Notifications'), notifications] : []),
  ];
}

/** The table of a job's webhook deliveries or notifications (these name their notifier). */
function deliveryTable(id, rows, answer) {
  const named = rows.some((row) => row.notifier !== undefined);
  return el(
    'div',
    { class: 'scroll' },
    el(
      'table',
      { id },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          named && el('th', {}, 'Notifier'),
          el('th', {}, 'Event'),
          el('th', {}, 'Status'),
          el('th', { class: 'number' }, 'Attempts'),
          el('th', {}, answer),
          el('th', {}, 'Next attempt'),
        ),
      ),
      el(
        'tbody',
        {},
        rows.map((row) =>
          el(
            'tr',
            {},
            named && el('td', {}, row.notifier),
            el('td', {}, row.event),
            el('td', {}, row.status),
            el('td', { class: 'number' }, `${row.attempts}/${row.maxAttempts}`),
            el('td', {}, [row.lastStatus, row.lastError].filter((part) => part !== undefined).join(' ')),
            el('td', {}, row.nextAttemptAt ? time(row.nextAttemptAt) : ''),
          ),
        ),
      ),
    ),
  );
}

/** Asks for confirmation in the page's dialog; resolves true for yes. */
function confirmAction(text, yes) {
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-yes').textContent = yes;
  confirmDialog.returnValue = '';
  confirmDialog.showModal();
  return new Promise((resolve) => confirmDialog.addEventListener('close', () => resolve(confirmDialog.returnValue === 'yes'), { once: true }));
}

async function act(job, action) {
  const question =
    action === 'cancel'
      ? `Cancel job ${job.id} (${job.operation})? ${job.status === 'running' ? 'Its handler is signalled to stop.' : 'It will not run.'}`
      : `Retry job ${job.id} (${job.operation})? It is queued again with a fresh attempt budget.`;
  if (!(await confirmAction(question, action === 'cancel' ? 'Cancel job' : 'Retry job'))) return;
  try {
    const changed = await api(`jobs/${encodeURIComponent(job.id)}/${action}`, { method: 'POST' });
    showFlash(`Job ${job.id} is ${changed.status}${changed.cancelRequested ? ' (cancel requested)' : ''}.`);
  } catch (error) {
    showFlash(`Could not ${action} job ${job.id}: ${error.message}`, true);
  }
  await refreshNow();
}

// --- the schedules ------------------------------------------------------------------------

function schedulesView() {
  const body = el('div');
  view.replaceChildren(el('h1', {}, 'Schedules'), body);
  return {
    async refresh() {
      const answer = await api('schedules');
      return [JSON.stringify(answer), () => body.replaceChildren(...drawSchedules(answer))];
    },
  };
}

function drawSchedules({ schedules }) {
  const table = el(
    'table',
    { id: 'schedules' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', {}, 'Name'),
        el('th', {}, 'Operation'),
        el('th', {}, 'Cron'),
        el('th', {}, 'Time zone'),
        el('th', {}, 'Last tick'),
        el('th', {}, 'Next runs'),
      ),
    ),
    el(
      'tbody',
      {},
      schedules.length === 0 ? el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No schedules recorded.')) : null,
      schedules.map((schedule) =>
        el(
          'tr',
          { 'data-schedule': schedule.name },
          el('td', {}, schedule.name),
          el('td', {}, el('a', { href: listLink({ operation: schedule.operation }) }, schedule.operation)),
          el('td', { 'data-field': 'cron' }, el('code', {}, schedule.cron)),
          el('td', { 'data-field': 'timezone' }, schedule.timezone),
          el(
            'td',
            { 'data-field': 'last-tick' },
            time(schedule.lastTick),
            schedule.lastJobId === undefined ? null : el('div', {}, jobLink(schedule.lastJobId)),
          ),
          el(
            'td',
            { 'data-field': 'next-runs' },
            schedule.retiredAt === undefined
              ? schedule.nextRuns.map((run) => el('div', { 'data-run': run }, time(run)))
              : el('span', { class: 'muted' }, 'retired ', time(schedule.retiredAt), ' (no process declares it)'),
          ),
        ),
      ),
    ),
  );
  return [
    el('div', { class: 'scroll' }, table),
    el('p', { class: 'muted' }, 'As the processes with a worker last declared them; times in this browser’s zone.'),
  ];
}

// --- routing and live updates ------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const query = new URLSearchParams(search);
  for (const link of document.querySelectorAll('[data-nav]')) link.removeAttribute('aria-current');
  let next;
  const jobMatch = /^\/jobs\/([^/]+)$/.exec(path);
  if (jobMatch) {
    next = jobView(decodeURIComponent(jobMatch[1]));
  } else if (path === '/schedules') {
    document.querySelector('[data-nav=schedules]').setAttribute('aria-current', 'page');
    next = schedulesView();
  } else if (path === '/jobs') {
    document.querySelector('[data-nav=jobs]').setAttribute('aria-current', 'page');
    next = listView(query);
  } else {
    document.querySelector('[data-nav=overview]').setAttribute('aria-current', 'page');
    next = overviewView();
  }
  current = { refresh: next.refresh, concerns: next.concerns ?? (() => true), drawn: '' };
  generation++;
  refreshNow();
}

/**
 * Live updates: one EventSource on every job's events (one connection, however many jobs are on
 * screen). An event that concerns the view has it read again soon (a burst of events, once), and
 * once more when the burst is over; EventSource reconnects by itself, and the view polls meanwhile.
 */
function openEvents() {
  events?.close();
  events = new EventSource('api/events');
  events.addEventListener('open', () => refreshNow());
  for (const type of EVENT_TYPES) events.addEventListener(type, onJobEvent);
}

function onJobEvent(event) {
  let jobId;
  try {
    jobId = JSON.parse(event.data).id;
  } catch {
    // Not a job: every view looks again.
  }
  if (jobId !== undefined && !current.concerns(jobId)) return;
  if (soon === undefined) {
    soon = setTimeout(() => {
      soon = undefined;
      refreshNow();
    }, 150);
  }
  clearTimeout(settle);
  settle = setTimeout(refreshNow, SETTLE_MS);
}

function streaming() {
  return events !== undefined && events.readyState === EventSource.OPEN;
}

/** Reads the view's data again and draws it if it changed; then waits for the next turn. */
async function refreshNow() {
  clearTimeout(timer);
  const mine = generation;
  if (document.hidden) {
    // A tab in the background asks nothing; it reads again when shown (visibilitychange).
    return;
  }
  try {
    const [answer, draw] = await current.refresh();
    if (mine !== generation) return;
    if (answer !== current.drawn) {
      current.drawn = answer;
      draw();
    }
    live.classList.remove('stale');
    live.textContent = 'live';
  } catch (error) {
    if (mine !== generation) return;
    live.classList.add('stale');
    live.textContent = 'not updating';
    if (error instanceof ProblemAnswer) {
      if (!current.drawn) view.replaceChildren(el('h1', {}, error.problem?.title ?? 'Error'), el('p', { id: 'problem' }, error.message));
    } else {
      showFlash(`The dashboard could not reach the server: ${error.message}`, true);
    }
  }
  if (mine === generation) {
    clearTimeout(timer);
    timer = setTimeout(refreshNow, streaming() ? BACKSTOP_MS : REFRESH_MS);
  }
}

document.getElementById('lookup').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = document.getElementById('lookup-id').value.trim().toUpperCase();
  if (id) location.hash = `#/jobs/${encodeURIComponent(id)}`;
});
document.addEventListener('visibilitychange', () => {
  // A tab in the background holds no stream (each counts against the operator's limit).
  if (document.hidden) {
    events?.close();
    events = undefined;
  } else {
    openEvents();
    refreshNow();
  }
});
window.addEventListener('hashchange', () => {
  hideFlash();
  route();
});

try {
  session = await api('session');
  if (!document.hidden) openEvents();
  route();
} catch (error) {
  // Signed in as nobody the dashboard lets in (403), or the server is unreachable: say so, draw nothing.
  view.replaceChildren(el('h1', {}, error.problem?.title ?? 'The dashboard is unavailable'), el('p', { id: 'problem' }, error.message));
}
