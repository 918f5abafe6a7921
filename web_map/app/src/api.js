// HTTP helpers for the platform's JSON endpoints.

export class ApiError extends Error {
  constructor(status, description) { super(description); this.status = status; }
}

async function parse(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  const body = await response.json().catch(() => ({}));
  throw new ApiError(response.status, body.description ?? response.statusText);
}

export const getJSON = async (url) => parse(await fetch(url));

// The API paths this server has (from its OpenAPI document), so the wall can tell whether an
// optional back end (drone review queue, planner queries) is installed without provoking 404s.
export async function installedPaths() {
  return new Set(Object.keys((await getJSON('/api')).paths));
}

export async function postJSON(url, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  return parse(await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) }));
}

// Text for the DOM: every string that comes from data goes through here.
export const escapeHtml = (value) => String(value ?? '').replace(/[&<>"']/g,
  (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
