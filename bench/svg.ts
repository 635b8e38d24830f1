/**
 * A minimal line-chart writer for benchmark results, producing standalone SVG text (no
 * dependencies). The x axis is categorical (points equally spaced, labelled with their values, so
 * M = 1, 10, 100, 1000 reads as a log scale); the y axis is linear from 0 to a rounded maximum,
 * with 5 grid lines. One polyline per series, with a legend. Missing points (NaN/undefined) break
 * nothing: they are skipped.
 *
 *   lineChart({ title, xLabel, yLabel, x: [1, 10, 100], series: [{ name: 'bearer', values: [..] }] })
 */

export interface Series {
  name: string;
  values: Array<number | undefined>;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Category labels of the x axis, in order. */
  x: Array<string | number>;
  series: Series[];
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" upper bound for the y axis: the first of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 (x a power of ten) at or above max. */
export function niceMax(max: number): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * p >= max) return f * p;
  return 10 * p;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

/** Render a line chart as an SVG document. */
export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 420;
  const m = { left: 70, right: 190, top: 40, bottom: 55 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const all = options.series.flatMap((s) => s.values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
  const yMax = niceMax(Math.max(0, ...all));
  const n = options.x.length;
  const xAt = (i: number) => m.left + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
  const yAt = (v: number) => m.top + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`);
  // Grid and y ticks.
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    const y = yAt(v).toFixed(1);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${formatTick(v)}</text>`);
  }
  // Axes and x ticks.
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="black"/>`);
  options.x.forEach((label, i) => {
    const x = xAt(i).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${escapeXml(String(label))}</text>`);
  });
  out.push(`<text x="${m.left + pw / 2}" y="${height - 12}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`);
  // Series.
  options.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length] as string;
    const pts = s.values
      .map((v, i) => (typeof v === 'number' && Number.isFinite(v) ? `${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}` : undefined))
      .filter((p): p is string => p !== undefined);
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>`);
    for (const p of pts) {
      const [x, y] = p.split(',');
      out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${color}"/>`);
    }
    out.push('</g>');
    const ly = m.top + 10 + si * 20;
    out.push(`<line x1="${m.left + pw + 15}" y1="${ly}" x2="${m.left + pw + 40}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${m.left + pw + 46}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
