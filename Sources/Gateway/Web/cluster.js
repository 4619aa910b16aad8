// The cluster (#/cluster): every member's own view, fetched from each member's HTTP URL in
// parallel every second with a short timeout, so a node going down and its shards moving to the
// others show within seconds. A member that does not answer shows as "unreachable".
import * as api from './api.js';
import { el } from './ui.js';

const PROBE_TIMEOUT_MS = 900;

/** GET /v1/cluster from one node, straight (no failover: the point is to ask that node). */
async function probe(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
  try {
    const response = await fetch(`${url}/v1/cluster`, { signal: controller.signal, cache: 'no-store' });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

export default function cluster(main) {
  const urls = new Set(api.knownNodes());
  const table = el('table', { id: 'cluster-members' });
  const summary = el('p', { class: 'lede', role: 'status' }, 'Asking every node…');
  main.append(
    el('h1', { tabindex: -1 }, 'Cluster'),
    summary,
    el('div', { class: 'table-wrap' }, table),
    el('p', { class: 'hint' }, 'Each row is that node’s own answer; “Others see” is how the rest of the cluster sees it.'),
  );

  let running = false;
  async function refresh() {
    if (running) return; // the previous round is still out
    running = true;
    try {
      api.knownNodes().forEach((url) => urls.add(url));
      const targets = [...urls];
      const answers = await Promise.all(targets.map(probe));
      const own = new Map(); // node id → its own answer
      const members = new Map(); // node id → { id, address, http }
      answers.forEach((answer, index) => {
        if (!answer) return;
        own.set(answer.node, answer);
        if (!members.has(answer.node)) members.set(answer.node, { id: answer.node, http: targets[index] });
        for (const member of answer.members ?? []) {
          const known = members.get(member.id) ?? {};
          members.set(member.id, { ...known, ...member, http: member.http || known.http });
          if (member.http) urls.add(member.http.replace(/\/+$/, ''));
        }
      });
      draw([...members.values()].sort((a, b) => a.id.localeCompare(b.id)), own);
    } finally {
      running = false;
    }
  }

  function draw(members, own) {
    const current = api.baseUrl();
    const cell = (value, props = {}) => el('td', props, value == null || value === '' ? '—' : String(value));
    const rows = members.map((member) => {
      const answer = own.get(member.id);
      // How the node sees itself when it answers; unreachable when it has a URL and no answer.
      const self = answer?.members?.find((m) => m.id === member.id)?.status ?? 'alive';
      const othersSee = [...own.values()].filter((other) => other.node !== member.id)
        .map((other) => [other.node, other.members?.find((m) => m.id === member.id)?.status ?? 'not listed']);
      const status = answer ? self : member.http ? 'unreachable' : othersSee[0]?.[1] ?? 'unknown';
      const held = answer?.shardsHeld ?? [];
      return el('tr', { dataset: { nodeId: member.id, status }, class: member.http === current ? 'current' : null },
        el('th', { scope: 'row' }, member.id, member.http === current ? el('span', { class: 'badge' }, 'this page') : null),
        cell(member.address, { class: 'wide' }),
        cell(member.http, { class: 'wide' }),
        el('td', {}, el('span', { class: `status status-${status}` }, status)),
        cell(answer ? (answer.reachesMajority ? 'yes' : 'no') : null, { class: 'wide' }),
        cell(answer?.shardsPlacedHere, { class: 'num' }),
        el('td', { class: 'num shards-held', title: held.map((s) => `${s.shard}@${s.epoch}`).join(' ') || null },
          String(held.length)),
        cell(othersSee.map(([node, seen]) => `${node}: ${seen}`).join(', '), { class: 'wide' }));
    });
    table.replaceChildren(
      // Address, HTTP, majority and "others see" give way at phone width (class wide, see style.css).
      el('thead', {}, el('tr', {}, ...['Node', 'Address', 'HTTP', 'Status', 'Majority', 'Shards placed', 'Shards held', 'Others see']
        .map((heading, index) => el('th', { scope: 'col', class: [1, 2, 4, 7].includes(index) ? 'wide' : null }, heading)))),
      el('tbody', {}, ...rows));
    const totalHeld = [...own.values()].reduce((sum, answer) => sum + (answer.shardsHeld?.length ?? 0), 0);
    summary.textContent = `${own.size} of ${members.length} nodes answer · ${totalHeld} shards held · this page talks to ${current}`;
  }

  refresh();
  const timer = setInterval(refresh, 1000);
  return () => clearInterval(timer);
}
