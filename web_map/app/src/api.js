// HTTP helpers for the platform's JSON endpoints. `optional` answers null on 404 so features whose
// back end is not installed yet (drone review queue, planner queries) can degrade instead of failing.

export class ApiError extends Error {
  constructor(status, description) { super(description); this.status = status; }
}

async function parse(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  const body = await response.json().catch(() => ({}));
  throw new ApiError(response.status, body.description ?? response.statusText);
}

export const getJSON = async (url) => parse(await fetch(url));

export async function optionalJSON(url) {
  const response = await fetch(url);
  return response.status === 404 ? null : parse(response);
}

export async function postJSON(url, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  return parse(await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) }));
}

// Text for the DOM: every string that comes from data goes through here.
export const escapeHtml = (value) => String(value ?? '').replace(/[&<>"']/g,
  (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
