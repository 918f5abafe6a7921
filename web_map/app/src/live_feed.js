// The wall's one connection for live data: Server-Sent Events from /live (pushed by the platform
// from PostgreSQL LISTEN/NOTIFY). EventSource reconnects by itself after a network blip.

export function connectLiveFeed({ onFigures, onChange, onStatus }) {
  const events = new EventSource('/live');
  events.addEventListener('open', () => onStatus('live'));
  events.addEventListener('error', () => onStatus(events.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'));
  events.addEventListener('figures', (e) => onFigures(JSON.parse(e.data)));
  events.addEventListener('change', (e) => onChange(JSON.parse(e.data).tables));
  return events;
}
