// The live figures beside the map. Rendered from the `figures` events of the live feed; the
// review-queue figure comes from the drone review API when it exists.
import { escapeHtml } from './api.js';

const ALARM_TYPES = { displacement: '位移 displacement', opened: '开启 opened', overflow: '满溢 overflow', methane: '甲烷 methane', low_battery: '电量低 low battery' };
const CASE_STEPS = { reported: '上报', filed: '立案', dispatched: '派遣', processing: '处理', handled: '反馈', checked: '核查', deferred: '缓办' };
const fmt = (n) => (n ?? '—').toLocaleString('zh-CN');

function caseSteps(open) {
  return Object.entries(CASE_STEPS).map(([state, label]) =>
    `<div><b data-figure="cases-${state}">${fmt(open.by_state[state] ?? 0)}</b><small>${label} ${state}</small></div>`).join('');
}

function departmentRows(departments) {
  return departments.map((d) => `<tr><td>${escapeHtml(d.department)}</td><td>${d.on_time_today_percent ?? '—'}%</td>
    <td data-figure="on-time-${escapeHtml(d.department)}">${d.on_time_30d_percent ?? '—'}%</td><td>${d.rework_30d_percent ?? '—'}%</td></tr>`).join('');
}

function alarmBars(byType, total) {
  return Object.entries(ALARM_TYPES).map(([type, label]) => {
    const n = byType[type] ?? 0;
    const width = total ? Math.round((100 * n) / total) : 0;
    return `<div class="bar-row"><span>${label}</span><div class="bar"><i style="width:${width}%"></i></div><b data-figure="alarm-${type}">${fmt(n)}</b></div>`;
  }).join('');
}

export function renderFigures(container, figures, reviewCount, recentAlarms) {
  const { open_alarms: alarms, stall_sites: stalls, cases_today: cases } = figures;
  const rate = figures.closure_rate_30d_percent;
  container.innerHTML = `
    <section class="card alarm-card">
      <h2>井盖告警 Open manhole alarms</h2>
      <div class="big red" data-figure="open-alarms">${fmt(alarms.total)}</div>
      ${alarmBars(alarms.by_type, alarms.total)}
      <div class="rate">离线传感器 offline sensors <b data-figure="offline-sensors">${fmt(figures.offline_sensors)}</b></div>
    </section>
    <section class="card">
      <h2>在办案件 Open cases by step</h2>
      <div class="triple steps">${caseSteps(figures.open_cases)}</div>
      <div class="rate">超时 overdue <b class="red" data-figure="cases-overdue">${fmt(figures.open_cases.overdue)}</b>
        · 待人工派遣 manual queue <b data-figure="cases-unrouted">${fmt(figures.open_cases.unrouted)}</b></div>
    </section>
    <section class="card">
      <h2>按期处置率 On-time rate by department</h2>
      <table class="departments"><tr><th></th><th>今日 today</th><th>30 天</th><th>返工 rework</th></tr>${departmentRows(figures.departments)}</table>
    </section>
    <section class="card">
      <h2>疏导点占用 Stall sites occupied</h2>
      <div class="gauge-row">
        <div class="gauge" style="--p:${stalls.percent ?? 0}"><span data-figure="stall-percent">${stalls.percent ?? '—'}<small>%</small></span></div>
        <div class="gauge-text"><b data-figure="stall-occupied">${fmt(stalls.occupied)}</b> / ${fmt(stalls.total)}<br><small>个疏导点在用 sites in use</small></div>
      </div>
    </section>
    <section class="card">
      <h2>今日案件 Cases today</h2>
      <div class="triple">
        <div><b data-figure="cases-reported">${fmt(cases.reported)}</b><small>上报 reported</small></div>
        <div><b data-figure="cases-filed">${fmt(cases.filed)}</b><small>立案 filed</small></div>
        <div><b data-figure="cases-closed">${fmt(cases.closed)}</b><small>结案 closed</small></div>
      </div>
      <div class="rate">结案率 closure rate (30 天) <b data-figure="closure-rate">${rate ?? '—'}%</b></div>
    </section>
    <section class="card">
      <h2>违建线索待审 Illegal-building candidates</h2>
      <div class="big amber" data-figure="review-pending">${reviewCount === null ? '—' : fmt(reviewCount)}</div>
      ${reviewCount === null ? '<small class="muted">无人机审核队列未启用 drone review queue not installed</small>' : ''}
    </section>
    <section class="card ticker">
      <h2>最新告警 Latest alarms</h2>
      <ol>${recentAlarms.map((a) => `<li><b>${escapeHtml(ALARM_TYPES[a.alarm_type] ?? a.alarm_type)}</b>
        <span>${escapeHtml(a.objname ?? a.objcode)}</span><time>${escapeHtml(new Date(a.raised_at).toLocaleString('zh-CN', { hour12: false }))}</time></li>`).join('')}</ol>
    </section>
    <footer class="as-of">更新于 updated ${escapeHtml(new Date(figures.as_of).toLocaleTimeString('zh-CN', { hour12: false }))}</footer>`;
}
