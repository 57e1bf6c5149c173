// Line charts on a canvas, drawn from arrays of numbers: no library, sized to the element and
// sharp on high-density screens. Each chart also says its latest values in text beside it.

const colours = ['#1f5fbf', '#d9822b', '#17794a', '#b3261e'];

/**
 * Draws `series` ({label, values}) over `times` (ms) on `canvas`; `unit` labels the scale.
 * Returns a line of text with each series' latest value, for the legend and screen readers.
 */
export function drawChart(canvas, times, series, unit) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const pad = { left: 44, right: 8, top: 8, bottom: 20 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  max = niceCeiling(max);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#5b6475';
  g.strokeStyle = '#e3e6eb';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (h * i) / 4;
    g.beginPath();
    g.moveTo(pad.left, y);
    g.lineTo(pad.left + w, y);
    g.stroke();
    const v = max - (max * i) / 4;
    g.fillText(formatTick(v), 4, y + 4);
  }
  const n = times.length;
  if (n > 1) {
    const span = times[n - 1] - times[0];
    g.fillText(`last ${Math.max(1, Math.round(span / 1000))} s`, pad.left, height - 4);
  } else {
    g.fillText('collecting samples…', pad.left, height - 4);
  }
  series.forEach((s, k) => {
    g.strokeStyle = colours[k % colours.length];
    g.lineWidth = 1.6;
    g.beginPath();
    s.values.forEach((v, i) => {
      const x = pad.left + (n <= 1 ? w : (w * i) / (n - 1));
      const y = pad.top + h - (max === 0 ? 0 : (h * v) / max);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  });
  const items = series.map((s, k) => ({
    colour: colours[k % colours.length],
    text: `${s.label}: ${formatTick(s.values.at(-1) ?? 0)}${unit}`,
  }));
  canvas.setAttribute('aria-label', items.map((i) => i.text).join(', '));
  return items;
}

/** The legend under a chart: each series' colour and latest value, as text. */
export function legend(target, items) {
  target.replaceChildren();
  for (const item of items) {
    const mark = document.createElement('span');
    mark.textContent = '■ ';
    mark.style.color = item.colour;
    target.append(mark, document.createTextNode(`${item.text}   `));
  }
}

function niceCeiling(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function formatTick(v) {
  if (v === 0) return '0';
  if (v >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (v >= 10) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}
